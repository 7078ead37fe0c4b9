# frozen_string_literal: true

require "spec_helper"
require "socket"
require "tmpdir"

# systemd socket activation (LISTEN_FDS / LISTEN_PID, sd_listen_fds(3)): a listener whose
# address matches an inherited listening socket takes it instead of binding, as puma does.
RSpec.describe "systemd socket activation" do
  ACTIVATED_APP = File.join(ServerProcess::APPS, "hello.ru")

  def wait_for(pid, log)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
    loop do
      return yield
    rescue SystemCallError, IOError, Net::OpenTimeout, Net::ReadTimeout, EOFError
      raise "the server exited:\n#{File.read(log)}" if Process.waitpid(pid, Process::WNOHANG)
      raise "no answer in 20 s:\n#{File.read(log)}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.1
    end
  end

  def stop(pid)
    return unless pid

    Process.kill("TERM", pid)
    Process.wait(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  # Runs iodine with `sockets` as descriptors 3, 4, … and LISTEN_FDS / LISTEN_PID set as a
  # service manager sets them (`pid_for_us: false` names another process).
  def spawn_activated(sockets, args, log, pid_for_us: true)
    exec_ruby = <<~RUBY
      ENV["LISTEN_PID"] = (#{pid_for_us} ? Process.pid : Process.pid + 1).to_s
      exec(*ARGV, (3...#{3 + sockets.size}).to_h { |fd| [fd, fd] })
    RUBY
    redirects = sockets.each_with_index.to_h { |s, i| [3 + i, s] }
    Process.spawn({ "LISTEN_FDS" => sockets.size.to_s, "LISTEN_FDNAMES" => "a" }, RbConfig.ruby, "-e", exec_ruby,
                  RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE, *args,
                  **redirects, in: File::NULL, out: log, err: [:child, :out])
  end

  it "serves on the socket systemd-socket-activate holds (the port is bound already: no second bind)" do
    tool = ENV.fetch("PATH", "").split(":").map { |d| File.join(d, "systemd-socket-activate") }.find { |p| File.executable?(p) }
    skip "systemd-socket-activate is not installed (Debian's systemd)" unless tool

    port = ServerProcess.free_port
    log = File.join(Dir.tmpdir, "iodine-activation-#{Process.pid}-#{port}.log")
    pid = Process.spawn(tool, "-l", "127.0.0.1:#{port}", RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE,
                        "-p", port.to_s, "-b", "127.0.0.1", "-t", "2", ACTIVATED_APP,
                        in: File::NULL, out: log, err: [:child, :out])
    # The first connection makes the tool start iodine, which answers it from the queue.
    body = wait_for(pid, log) { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) }
    expect(body).to eq("config.ru here")
    expect(File.read(log)).to include("systemd socket activation: listening on 127.0.0.1:#{port}")
    expect(File.read(log)).not_to include("Couldn't open listening socket")
  ensure
    stop(pid)
  end

  it "takes an inherited Unix socket and leaves its file; closes an inherited socket no listener asked for" do
    Dir.mktmpdir do |dir|
      path = File.join(dir, "app.sock")
      unix = UNIXServer.new(path)
      unused = TCPServer.new("127.0.0.1", 0)
      unused_port = unused.addr[1]
      log = File.join(dir, "server.log")
      pid = spawn_activated([unix, unused], ["-b", path, "-t", "2", ACTIVATED_APP], log)
      unix.close
      unused.close
      answer = wait_for(pid, log) do
        UNIXSocket.open(path) do |s|
          s.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          s.read
        end
      end
      expect(answer).to start_with("HTTP/1.1 200").and end_with("config.ru here")
      expect(File.read(log)).to include("no listener for the socket listening on 127.0.0.1:#{unused_port}: closed")
      expect { TCPSocket.new("127.0.0.1", unused_port).close }.to raise_error(Errno::ECONNREFUSED)
      stop(pid)
      pid = nil
      expect(File.socket?(path)).to be(true) # the service manager's file stays
    ensure
      stop(pid)
    end
  end

  it "ignores LISTEN_FDS meant for another process (LISTEN_PID) and binds as usual" do
    held = TCPServer.new("127.0.0.1", 0)
    port = ServerProcess.free_port
    log = File.join(Dir.tmpdir, "iodine-activation-other-#{Process.pid}.log")
    pid = spawn_activated([held], ["-p", port.to_s, "-b", "127.0.0.1", ACTIVATED_APP], log, pid_for_us: false)
    body = wait_for(pid, log) { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) }
    expect(body).to eq("config.ru here")
    expect(File.read(log)).not_to include("systemd socket activation")
  ensure
    stop(pid)
    held&.close
  end
end
