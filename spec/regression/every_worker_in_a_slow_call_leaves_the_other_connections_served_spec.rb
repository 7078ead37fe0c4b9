# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# HTTP connections are read on the reactor the Ruby workers drive. With one worker (`-t 1`) in
# a slow app call (a `sleep`, or an `each` body between two chunks), no worker drives it: the
# standby thread must, or every other connection would stop with it. Static files are served,
# chunks the body already yielded reach the client, and a finished answer is written, all
# while the only worker is still inside the app.
RSpec.describe "with every worker in a slow app call, the other connections are still served" do
  before(:all) do
    @root = Dir.mktmpdir("iodine-standby")
    File.write(File.join(@root, "static.txt"), "from the public folder\n")
    @app = File.join(@root, "app.ru")
    File.write(@app, <<~RUBY)
      ticks = Class.new do
        def initialize(count, interval) = (@count, @interval = count, interval)
        def each
          @count.times { |i| yield "tick \#{i}\\n"; sleep @interval }
        end
      end
      run(lambda do |env|
        case env["PATH_INFO"]
        when "/slow" then sleep(Float(env["QUERY_STRING"])); [200, {}, ["slow"]]
        when "/ticks" then [200, { "content-type" => "text/plain" }, ticks.new(3, 1.5)]
        else [200, {}, ["ok"]]
        end
      end)
    RUBY
    @server = ServerProcess.new(["-t", "1", "-www", @root, @app])
  end

  after(:all) do
    @server&.stop
    FileUtils.rm_rf(@root)
  end

  let(:port) { @server.port }

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # GET `path` on a new connection in a thread: [seconds from send to the whole answer, body].
  def timed_get(path)
    server_port = port
    Thread.new do
      socket = TCPSocket.new("127.0.0.1", server_port)
      sent = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      out, = read_for(socket, 10)
      [Process.clock_gettime(Process::CLOCK_MONOTONIC) - sent, out.split("\r\n\r\n", 2).last]
    ensure
      socket&.close
    end
  end

  it "serves a static file, on a new and on a kept-alive connection, while the lone worker sleeps" do
    kept = TCPSocket.new("127.0.0.1", port)
    kept.write("GET /static.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    first, = read_for(kept, 5) { |out| out.end_with?("from the public folder\n") }
    expect(first).to start_with("HTTP/1.1 200")

    slow = timed_get("/slow?3")
    sleep 0.3 # the worker is in its sleep now
    took, body = timed_get("/static.txt").value
    expect(body).to eq("from the public folder\n")
    expect(took).to be < 1.0

    started = now
    kept.write("GET /static.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    again, = read_for(kept, 5) { |out| out.end_with?("from the public folder\n") }
    expect(again).to start_with("HTTP/1.1 200")
    expect(now - started).to be < 1.0

    expect(slow.value.last).to eq("slow")
  ensure
    kept&.close
  end

  it "sends each chunk an `each` body yields while the lone worker is still inside it" do
    socket = TCPSocket.new("127.0.0.1", port)
    sent = now
    socket.write("GET /ticks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out, = read_for(socket, 5) { |o| o.include?("tick 0\n") }
    expect(out).to include("tick 0\n")
    expect(now - sent).to be < 1.0 # the body sleeps 1.5 s after it
    out2, = read_for(socket, 5) { |o| o.include?("tick 1\n") }
    expect(out + out2).to include("tick 1\n")
    rest, = read_for(socket, 6)
    expect(out + out2 + rest).to include("tick 2\n")
  ensure
    socket&.close
  end

  it "writes an answer the worker finished before it went into a slow call" do
    # Both requests are read in one pass: the worker answers /fast, then sleeps in /slow.
    a = TCPSocket.new("127.0.0.1", port)
    b = TCPSocket.new("127.0.0.1", port)
    sent = now
    a.write("GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    b.write("GET /slow?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    fast, = read_for(a, 5) { |o| o.end_with?("ok") }
    expect(fast).to start_with("HTTP/1.1 200").and end_with("ok")
    expect(now - sent).to be < 1.0
    slow, = read_for(b, 5) { |o| o.end_with?("slow") }
    expect(slow).to end_with("slow")
    expect_serving(@server, "ok")
  ensure
    a&.close
    b&.close
  end
end
