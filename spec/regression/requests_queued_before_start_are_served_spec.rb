# frozen_string_literal: true

require "spec_helper"

# A listener accepts connections (into the kernel backlog) from Iodine.listen on, so
# requests can be waiting when Iodine.start begins serving them. They must be answered by
# the app like any other, never dropped with a 500 because the Ruby workers were not ready
# yet. (The exe does the same: it binds, then starts; a client that connects at boot - like
# ServerProcess's readiness probe followed by a first request - lands in that window.)
RSpec.describe "requests waiting in the backlog when the server starts are served, not 500" do
  def script(port)
    code = <<~RUBY
      require "iodine"
      app = lambda do |env|
        alive = Iodine::Base.respond_to?(:workers_alive) ? Iodine::Base.workers_alive.to_s : "unknown"
        [200, { "content-type" => "text/plain" }, [env["PATH_INFO"] == "/workers" ? alive : "ok"]]
      end
      Iodine.listen(service: :http, port: #{port}, address: "127.0.0.1", handler: app)
      Iodine.threads = 2
      sleep 0.4 # requests queue up meanwhile
      Iodine.start
    RUBY
    ["-e", code]
  end

  def wait_for_backlog(port, server)
    deadline = Time.now + 10
    begin
      TCPSocket.new("127.0.0.1", port).close
    rescue Errno::ECONNREFUSED
      raise "server exited early:\n#{server.log}" if server.exited?
      raise "no listener on #{port}" if Time.now > deadline

      sleep 0.01
      retry
    end
  end

  it "answers 5 rounds of 20 requests sent between Iodine.listen and Iodine.start with 200 ok" do
    statuses = Hash.new(0)
    5.times do
      port = ServerProcess.free_port
      server = ServerProcess.new(nil, script: script(port), port: port, wait_for: nil)
      begin
        wait_for_backlog(port, server)
        sockets = Array.new(20) do
          s = TCPSocket.new("127.0.0.1", port)
          s.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
          s
        end
        sockets.each do |s|
          reply = IO.select([s], nil, nil, 5) ? (s.read rescue "#{$!.class}") : "no answer in 5 s"
          statuses[reply.lines.first.to_s.strip] += 1
          s.close
        end
      ensure
        server.stop
      end
    end
    expect(statuses).to eq("HTTP/1.1 200 OK" => 100)
  end
end
