# frozen_string_literal: true

# For the hostile-input spec: GET / answers "ok", /echo answers the request body's size in
# bytes (any method), /workers answers Iodine::Base.workers_alive; anything else is a 404.
# Nothing here raises, so a 500 from the server is the server's own.
app = lambda do |env|
  case env["PATH_INFO"]
  when "/"
    [200, { "content-type" => "text/plain" }, ["ok"]]
  when "/echo"
    input = env["rack.input"]
    size = 0
    if input
      buf = +""
      size += buf.bytesize while input.read(16_384, buf)
    end
    [200, { "content-type" => "text/plain" }, [size.to_s]]
  when "/workers"
    [200, { "content-type" => "text/plain" }, [Iodine::Base.workers_alive.to_s]]
  else
    [404, { "content-type" => "text/plain" }, ["not found"]]
  end
end

run app
