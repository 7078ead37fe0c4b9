# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# Stopping: one grace period bounds the whole stop however many requests are stuck; a second
# INT/TERM exits at once (non-zero); the app's own INT/TERM traps still run; USR1 in one
# process only logs.
RSpec.describe "shutdown and signals (exe/iodine)" do
  GRACE = 8 # Iodine::Base::Runner::SHUTDOWN_GRACE (this spec runs the server as a process)

  around do |example|
    Dir.mktmpdir do |dir|
      @dir = dir
      @marker = File.join(dir, "trapped")
      @app = File.join(dir, "app.ru")
      File.write(@app, <<~RUBY)
        # The app's own handlers, installed before the server starts (as Rails or a test
        # harness would): they must still run.
        trap("INT") { File.write(#{@marker.inspect}, "INT") }
        trap("TERM") { |signo| File.write(#{@marker.inspect}, "TERM \#{signo}") }
        run(lambda do |env|
          sleep 120 if env["PATH_INFO"] == "/stuck"
          [200, { "content-type" => "text/plain" }, ["ok"]]
        end)
      RUBY
      example.run
    end
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Starts `-t 4` and gets four requests stuck in the app.
  def server_with_stuck_requests
    server = ServerProcess.new(["-t", "4", "-w", "1", @app])
    @clients = Array.new(4) do
      Thread.new do
        socket = TCPSocket.new("127.0.0.1", server.port)
        socket.write("GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        socket.read rescue nil # rubocop:disable Style/RescueModifier
      ensure
        socket&.close
      end
    end
    sleep 0.5
    server
  end

  after { @clients&.each(&:kill) }

  it "stops within one grace period with four requests stuck in the app, and exits 0" do
    server = server_with_stuck_requests
    started = now
    server.signal("INT")
    status = server.wait(GRACE + 10)
    took = now - started
    expect(status&.exitstatus).to eq(0)
    expect(took).to be < GRACE + 2
    expect(server.log).to include("4 request(s) still running after #{GRACE} s: stopped")
    expect(server.log).to include("Shutdown Complete")
  ensure
    server&.stop("KILL")
  end

  %w[INT TERM].each do |sig|
    it "exits at once (status 2) on a second #{sig} during a graceful stop" do
      server = server_with_stuck_requests
      server.signal(sig)
      sleep 0.5
      started = now
      server.signal(sig)
      status = server.wait(GRACE + 10)
      expect(now - started).to be < 1.0
      expect(status&.exitstatus).to eq(2)
      expect(server.log).to include("second SIG#{sig}: exiting now")
    ensure
      server&.stop("KILL")
    end
  end

  %w[INT TERM].each do |sig|
    it "still runs the app's own #{sig} trap, after stopping gracefully" do
      server = ServerProcess.new(["-t", "1", "-w", "1", @app])
      expect(http_get(server.port, "/").body).to eq("ok")
      server.signal(sig)
      expect(server.wait(GRACE + 5)&.exitstatus).to eq(0)
      expected = sig == "INT" ? "INT" : "TERM #{Signal.list['TERM']}"
      expect(File.read(@marker)).to eq(expected)
    ensure
      server&.stop("KILL")
    end
  end

  it "only logs USR1 when running as one process, and goes on serving" do
    server = ServerProcess.new(["-t", "1", "-w", "1", @app])
    server.signal("USR1")
    sleep 0.3
    expect(http_get(server.port, "/").body).to eq("ok")
    expect(server.exited?).to be(false)
    expect(server.log_with("USR1")).to include("USR1: a hot restart needs cluster mode")
  ensure
    server&.stop
  end
end
