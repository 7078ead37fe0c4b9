# frozen_string_literal: true

require "spec_helper"
require_relative "../../lib/iodine/version"
require "open3"

RSpec.describe "the iodine command" do
  def iodine(*args, env: {}, chdir: ROOT)
    Open3.capture3(env, RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE, *args, chdir: chdir)
  end

  it "prints help for -? and -h and exits 0" do
    %w[-? -h --help].each do |flag|
      out, _err, status = iodine(flag)
      expect(status.exitstatus).to eq(0)
      expect(out).to include("Usage: iodine").and include("-threads, -t")
    end
  end

  it "prints its version for --version and exits 0" do
    %w[--version -version].each do |flag|
      out, _err, status = iodine(flag)
      expect(status.exitstatus).to eq(0)
      expect(out).to eq("iodine #{Iodine::VERSION} (Rust edition) on Ruby #{RUBY_VERSION}\n")
    end
  end

  it "rejects unknown flags with a clear error and no backtrace" do
    _out, err, status = iodine("--no-such-flag", "x.ru")
    expect(status.exitstatus).to eq(1)
    expect(err).to include("unknown argument --no-such-flag")
    expect(err).not_to include(".rb:")
  end

  it "rejects a non-numeric value for a number flag" do
    _out, err, status = iodine("-t", "many")
    expect(status.exitstatus).to eq(1)
    expect(err).to include("-threads needs a number")
  end

  it "says so when there is no app" do
    Dir.mktmpdir do |dir|
      _out, err, status = iodine(chdir: dir)
      expect(status.exitstatus).to eq(1)
      expect(err).to include("no app given and no config.ru")
    end
  end

  it "finds config.ru in the current directory" do
    Dir.mktmpdir do |dir|
      FileUtils.cp(app_path("hello.ru"), File.join(dir, "config.ru"))
      server = ServerProcess.new([], chdir: dir)
      expect(http_get(server.port, "/").body).to eq("config.ru here")
      expect(server.stop.exitstatus).to eq(0)
    end
  end

  it "takes the app file as a positional argument, also without .ru" do
    server = ServerProcess.new([app_path("hello")])
    expect(http_get(server.port, "/").body).to eq("config.ru here")
  ensure
    server&.stop
  end

  it "honours PORT and THREADS from the environment" do
    port = ServerProcess.free_port
    server = ServerProcess.new(["-b", "127.0.0.1", app_path("hello.ru")], env: { "PORT" => port.to_s, "THREADS" => "3" },
                                                                          port: port, bind: false)
    expect(http_get(port, "/").code).to eq("200")
    expect(server.log).to include("3 Threads")
  ensure
    server&.stop
  end

  it "accepts -flag=value, -flagvalue and --flag forms" do
    port = ServerProcess.free_port
    server = ServerProcess.new(["-p#{port}", "--bind", "127.0.0.1", "-t=2", app_path("hello.ru")], port: port, bind: false)
    expect(http_get(port, "/").code).to eq("200")
    expect(server.log).to include("2 Threads")
  ensure
    server&.stop
  end

  it "computes negative -t as cores / n" do
    server = ServerProcess.new(["-t", "-1", app_path("hello.ru")])
    # §1.5: cores / 1, uncapped, one less when threads × workers (1) reach the cores (> 3).
    cores = Etc.nprocessors
    threads = cores > 3 ? cores - 1 : cores
    expect(server.log).to include("1 Worker X #{threads} Threads")
  ensure
    server&.stop
  end

  it "logs each request with -v" do
    server = ServerProcess.new(["-v", app_path("echo.ru")])
    http_get(server.port, "/status?201")
    expect(server.log_with("GET /status")).to match(%r{127\.0\.0\.1 - - \[.+ GMT\] "GET /status HTTP/1\.1" 201 6b \d+ms})
  ensure
    server&.stop
  end

  it "is quiet with -V 0" do
    server = ServerProcess.new(["-V", "0", app_path("hello.ru")])
    http_get(server.port, "/")
    expect(server.stop.exitstatus).to eq(0)
    expect(server.log).not_to include("INFO")
  end

  it "listens on a Unix socket with -b ./path" do
    Dir.mktmpdir do |dir|
      server = ServerProcess.new(["-b", "./iodine.sock", app_path("hello.ru")], chdir: dir, bind: false, wait_for: :none)
      sock_path = File.join(dir, "iodine.sock")
      Timeout.timeout(10) { sleep 0.05 until File.socket?(sock_path) }
      sock = UNIXSocket.new(sock_path)
      sock.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      expect(sock.read).to end_with("config.ru here")
      sock.close
      expect(server.stop.exitstatus).to eq(0)
      expect(File.exist?(sock_path)).to be(false)
    end
  end

  it "serves through `rackup -s iodine` (Rack's handler registry), honouring -p and -o" do
    rackup = Gem.bin_path("rack", "rackup")
    port = ServerProcess.free_port
    server = ServerProcess.new(nil, script: [rackup, "-s", "iodine", "-p", port.to_s, "-o", "127.0.0.1",
                                             File.join(ROOT, "examples", "hello.ru")], port: port)
    expect(http_get(port, "/").body).to eq("Hello World!")
    expect(server.log).to include("Iodine")
    expect(server.stop.exitstatus).to eq(0)
  end

  %w[INT TERM].each do |sig|
    it "on #{sig}: stops accepting, finishes the in-flight request, exits 0" do
      server = ServerProcess.new([app_path("echo.ru")])
      slow = Thread.new { http_get(server.port, "/slow?1") }
      sleep 0.3
      server.signal(sig)
      res = slow.value
      expect(res.body).to eq("slow done")
      status = server.wait(15)
      expect(status&.exitstatus).to eq(0)
      expect(server.log).to include("Shutdown Complete")
      expect { TCPSocket.new("127.0.0.1", server.port) }.to raise_error(SystemCallError)
    ensure
      server&.stop
    end
  end
end
