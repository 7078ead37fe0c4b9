# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require_relative "../support/process_tree"

# A TERM that reaches a cluster worker while it runs its boot hooks (`:after_fork`,
# `:enter_child`) is a graceful stop, honoured as soon as the worker serves. It used to be
# lost (the stop flag was cleared when the worker's server started): a cluster stopped while
# its workers booted waited out its whole grace period (10 s) and then killed them, without
# their `on_finish`; a worker told to leave as it booted served on.
RSpec.describe "a TERM during a cluster worker's boot hooks" do
  include ProcessTree

  BOOT_HOOK_SECONDS = 2

  around do |example|
    Dir.mktmpdir("iodine-boot-term") do |dir|
      @events = File.join(dir, "events")
      @app = File.join(dir, "slow_boot.ru")
      File.write(@app, <<~RUBY)
        EVENTS = #{@events.inspect}
        def note(line) = File.write(EVENTS, "\#{Process.pid} \#{line}\\n", mode: "a")
        Iodine.on_state(ENV.fetch("BOOT_HOOK").to_sym) do
          next unless Iodine.worker? # :after_fork fires in the master too

          note("booting")
          sleep #{BOOT_HOOK_SECONDS}
          note("booted")
        end
        Iodine.on_state(:on_start) { note("on_start") }
        Iodine.on_state(:on_finish) { note("on_finish") }
        run ->(_env) { [200, { "content-type" => "text/plain" }, ["pid \#{Process.pid}"]] }
      RUBY
      example.run
    end
  end

  after do
    if @server
      @seen = (@seen || []) | children(@server.pid) unless @server.exited?
      @server.stop("KILL")
    end
    kill_all(@seen || [])
  end

  # [[pid, event], ...] as the processes noted them.
  def events
    pid_events(@events)
  end

  def events_of(pid)
    events.select { |who, _| who == pid }.map(&:last)
  end

  # Starts `-w 2 -t 1` with the slow hook on `hook`; the pids of both workers once both run it.
  def cluster_in_boot_hooks(hook)
    @server = ServerProcess.new(["-w", "2", "-t", "1", @app], env: { "BOOT_HOOK" => hook.to_s }, wait_for: nil)
    booting = wait_until(20) do
      pids = events.select { |_, event| event == "booting" }.map(&:first).uniq
      pids.size == 2 && pids
    end
    expect(booting).not_to be_nil, "the workers never ran their boot hook:\n#{@server.log}"
    @seen = booting
    expect(events.map(&:last)).not_to include("booted") # still in their hooks
    booting.sort
  end

  %i[enter_child after_fork].each do |hook|
    it "TERM to the master while both workers sleep in :#{hook}: the cluster stops gracefully (exit 0, " \
       "every on_finish) in well under its 10 s grace, killing nobody" do
      workers = cluster_in_boot_hooks(hook)
      started = now
      @server.signal("TERM")
      status = @server.wait(20)
      took = now - started
      expect(status).not_to be_nil, "the master still runs 20 s after TERM:\n#{@server.log}"
      expect(@server.log).not_to include("did not stop in time")
      expect(status.exitstatus).to eq(0), @server.log
      expect(took).to be < BOOT_HOOK_SECONDS + 6, "the stop took #{took.round(1)} s:\n#{@server.log}"
      workers.each do |pid|
        expect(events_of(pid)).to include("booted", "on_finish"), "worker #{pid}: #{events_of(pid)}\n#{@server.log}"
        expect(events_of(pid).index("on_finish")).to be > events_of(pid).index("booted")
      end
      expect(events_of(@server.pid)).to include("on_finish")
      expect(@server.log).not_to include("crashed")
      expect(workers.select { |pid| alive?(pid) }).to eq([])
    end
  end

  it "TERM straight to a worker in its :enter_child hook: once booted it stops gracefully (exit 0, on_finish), " \
     "the master replaces it and stays up" do
    workers = cluster_in_boot_hooks(:enter_child)
    victim, survivor = workers
    Process.kill("TERM", victim)
    gone = wait_until(BOOT_HOOK_SECONDS + 8) { !alive?(victim) }
    expect(gone).to be(true), "worker #{victim} still runs #{BOOT_HOOK_SECONDS + 8} s after its TERM " \
                              "(events: #{events_of(victim)})\n#{@server.log}"
    log = @server.log_with("Child worker (#{victim})")
    expect(log).to include("Child worker (#{victim}) exited; starting a new one")
    expect(log).not_to include("Child worker (#{victim}) crashed")
    expect(events_of(victim)).to include("booted", "on_finish")
    replacement = wait_until(BOOT_HOOK_SECONDS + 8) { (children(@server.pid) - [survivor, victim]).first }
    expect(replacement).not_to be_nil, @server.log
    @seen |= [replacement]
    served = wait_until(BOOT_HOOK_SECONDS + 8) { events_of(replacement).include?("on_start") }
    expect(served).to be(true), "the replacement #{replacement} never served: #{events_of(replacement)}"
    expect(alive?(survivor)).to be(true)
    expect(@server.exited?).to be(false)
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
  end
end
