# frozen_string_literal: true

# Apps that end their own worker thread in the ways Ruby allows: the server must log each
# death and replace the thread, so the pool stays at its size.
run(lambda do |env|
  case env["PATH_INFO"]
  when "/kill" then Thread.current.kill
  when "/exit" then Thread.exit
  when "/kill-in-each"
    body = Object.new
    def body.each
      yield "partial"
      Thread.current.kill
    end
    [200, {}, body]
  when "/workers" then [200, { "Content-Type" => "text/plain" }, [Iodine::Base.workers_alive.to_s]]
  else [200, { "Content-Type" => "text/plain" }, ["ok"]]
  end
end)
