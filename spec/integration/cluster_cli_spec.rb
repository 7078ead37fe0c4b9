# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# Cluster mode from the command line: the worker count from the environment, the master's pid
# file, and the puma-style hooks of a `-C` config file.
RSpec.describe "cluster mode from the command line" do
  # An app that answers with the pid of the process serving it.
  def pid_app(dir)
    path = File.join(dir, "pid.ru")
    File.write(path, "run ->(_env) { [200, { 'content-type' => 'text/plain' }, [Process.pid.to_s]] }\n")
    path
  end

  it "takes the worker count from WEB_CONCURRENCY (and WORKERS), with -t alone meaning one process" do
    Dir.mktmpdir do |dir|
      server = ServerProcess.new(["-t", "1", pid_app(dir)], env: { "WEB_CONCURRENCY" => "2" })
      begin
        pids = Array.new(30) { http_get(server.port, "/").body }.uniq
        expect(server.log).to include("2 Workers X 1 Threads per worker")
        expect(pids).not_to include(server.pid.to_s) # the master serves no client
      ensure
        expect(server.stop("INT")&.exitstatus).to eq(0)
      end
      single = ServerProcess.new(["-t", "2", pid_app(dir)])
      begin
        expect(http_get(single.port, "/").body).to eq(single.pid.to_s)
        expect(single.log).to include("1 Worker X 2 Threads")
      ensure
        single.stop("INT")
      end
    end
  end

  it "writes the master's pid file at start and removes it at the end" do
    Dir.mktmpdir do |dir|
      server = ServerProcess.new(["-w", "2", "-t", "1", "-pid", "#{dir}/", pid_app(dir)])
      pid_file = File.join(dir, "iodine.pid")
      begin
        expect(File.read(pid_file)).to eq("#{server.pid}\r\n")
      ensure
        expect(server.stop("TERM")&.exitstatus).to eq(0)
      end
      expect(File.exist?(pid_file)).to be(false)
    end
  end

  it "runs a config file's puma-style hooks in the right processes" do
    Dir.mktmpdir do |dir|
      events = File.join(dir, "events.log")
      conf = File.join(dir, "conf.rb")
      File.write(conf, <<~RUBY)
        before_fork { File.write(#{events.inspect}, "before_fork \#{Process.pid}\\n", mode: "a") }
        on_worker_boot { File.write(#{events.inspect}, "on_worker_boot \#{Process.pid}\\n", mode: "a") }
      RUBY
      server = ServerProcess.new(["-w", "2", "-t", "1", "-C", conf, pid_app(dir)])
      workers = Array.new(30) { http_get(server.port, "/").body }.uniq
      server.stop("INT")
      lines = File.read(events).lines.map(&:split)
      expect(lines.select { |e, _| e == "before_fork" }.map(&:last).uniq).to eq([server.pid.to_s])
      boots = lines.select { |e, _| e == "on_worker_boot" }.map(&:last)
      # after_fork runs on both sides of each fork: the master twice, each worker once.
      expect(boots.count(server.pid.to_s)).to eq(2)
      expect((boots - [server.pid.to_s]).size).to eq(2)
      expect(workers - boots).to be_empty
    end
  end
end
