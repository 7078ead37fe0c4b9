# frozen_string_literal: true

# rack.hijack where building the IO fails (TCPSocket.for_fd raises): the duplicated
# descriptor must be closed, not leaked.
FAILS = [0]
TCPSocket.singleton_class.prepend(Module.new do
  def for_fd(*)
    raise Errno::EMFILE, "for_fd failing on purpose"
  end
end)

run(lambda do |env|
  case env["PATH_INFO"]
  when "/hijack"
    begin
      env["rack.hijack"].call
    rescue SystemCallError
      FAILS[0] += 1
    end
    [200, { "Content-Type" => "text/plain" }, ["not hijacked"]]
  when "/fails" then [200, {}, [FAILS[0].to_s]]
  else [200, {}, ["ok"]]
  end
end)
