# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require_relative "../support/process_tree"

# One process (`-w 1`): the first INT/TERM while its boot hooks run (`:pre_start`, before the
# server serves) is a graceful stop: once booted it stops, runs `on_finish`, removes its
# `-pid` file and exits 0. It used to count as a second signal (no server ran yet, which read
# as "already stopping"): exit 2 at once, no `on_finish`, and the pid file left behind.
RSpec.describe "the first stop signal during a single process's boot hooks" do
  include ProcessTree

  around do |example|
    Dir.mktmpdir("iodine-single-boot") do |dir|
      @events = File.join(dir, "events")
      @pid_file = File.join(dir, "iodine.pid")
      @app = File.join(dir, "slow_boot.ru")
      File.write(@app, <<~RUBY)
        EVENTS = #{@events.inspect}
        def note(line) = File.write(EVENTS, "\#{line}\\n", mode: "a")
        Iodine.on_state(:pre_start) do
          note("booting")
          sleep 1.5
          note("booted")
        end
        Iodine.on_state(:on_finish) { note("on_finish") }
        run ->(_env) { [200, { "content-type" => "text/plain" }, ["ok"]] }
      RUBY
      example.run
    end
  end

  after { @server&.stop("KILL") }

  def events
    File.exist?(@events) ? File.readlines(@events, chomp: true) : []
  end

  %w[TERM INT].each do |sig|
    it "#{sig} during :pre_start: a graceful stop (exit 0, on_finish), the pid file removed" do
      @server = ServerProcess.new(["-w", "1", "-t", "1", "-pid", @pid_file, @app], wait_for: nil)
      booting = wait_until(20) { events.include?("booting") }
      expect(booting).to be(true), "the hook never ran:\n#{@server.log}"
      expect(File.read(@pid_file).to_i).to eq(@server.pid)
      @server.signal(sig)
      status = @server.wait(12)
      expect(status).not_to be_nil, "still running 12 s after #{sig}:\n#{@server.log}"
      aggregate_failures do
        expect(@server.log).not_to include("second SIG")
        expect(status.exitstatus).to eq(0), @server.log
        expect(events).to eq(%w[booting booted on_finish])
        expect(File.exist?(@pid_file)).to be(false), "the pid file was left behind"
      end
    end
  end
end
