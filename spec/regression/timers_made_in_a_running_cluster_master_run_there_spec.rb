# frozen_string_literal: true

require "spec_helper"
require "set"
require "tmpdir"
require_relative "../support/process_tree"

# Timers and `Iodine.run` blocks made in a cluster's master once it runs (in `:enter_master`,
# which fires after each fork; in a master-side `Iodine.subscribe` block) run in the master's
# own loop, and no worker forked later takes them. They used to be parked for "the next
# start": the master never ran them, and the next worker it forked (the second one at boot,
# every replacement later) ran them instead, as if they were its own.
RSpec.describe "timers made in a running cluster master" do
  include ProcessTree

  before(:context) do
    @dir = Dir.mktmpdir("iodine-master-timers")
    @events = File.join(@dir, "events")
    app = File.join(@dir, "master_timers.ru")
    File.write(app, <<~RUBY)
      EVENTS = #{@events.inspect}
      def note(line) = File.write(EVENTS, "\#{Process.pid} \#{line}\\n", mode: "a")
      Iodine.on_state(:on_start) { note("on_start") }
      made = false
      Iodine.on_state(:enter_master) do
        next if made # it fires after every fork: the timers are made once

        made = true
        note("enter_master")
        Iodine.run_after(200) { note("after") }
        Iodine.run_every(100, 3) { note("every") }
        Iodine.run { note("run") }
        Iodine.run_every(250) { note("tick") }
        cancelled = Iodine.run_every(100) { note("cancelled") }
        Iodine.run_after(450) { note("cancel_timer \#{Iodine.cancel_timer(cancelled)}") }
      end
      # Subscribed before start: in every process, the master included; only the master's
      # block makes a timer.
      Iodine.subscribe("master-timers") do |_channel, message|
        Iodine.run_after(50) { note("sub \#{message}") } if Iodine.master?
      end
      run(lambda do |env|
        Iodine.publish("master-timers", env["QUERY_STRING"]) if env["PATH_INFO"] == "/pub"
        [200, { "content-type" => "text/plain" }, [Process.pid.to_s]]
      end)
    RUBY
    @server = ServerProcess.new(["-w", "2", "-t", "1", app], wait_for: nil)
    @master = @server.pid
    @seen = Set.new
  end

  after(:context) do
    @seen.merge(children(@master)) unless @server.exited?
    @server.stop("KILL")
    kill_all(@seen.to_a)
    FileUtils.remove_entry(@dir)
  end

  # [[pid, event], ...] as the processes noted them.
  def events
    pid_events(@events)
  end

  def of_master(event)
    events.count { |pid, e| pid == @master && e == event }
  end

  # What processes other than the master noted, but on_start.
  def noted_by_workers
    events.reject { |pid, e| pid == @master || e == "on_start" }
  end

  # The master's two workers once both serve and none is in `old`; nil after `seconds`.
  def two_serving_workers(old, seconds = 15)
    wait_until(seconds) do
      pids = children(@master)
      @seen.merge(pids)
      serving = events.select { |_, e| e == "on_start" }.map(&:first)
      pids.size == 2 && (pids & old).empty? && (pids - serving).empty? && pids
    end
  end

  it "run_after, run_every(100, 3), Iodine.run and cancel_timer, made in :enter_master, run in the master, " \
     "as often as asked, and in no worker" do
    @workers = two_serving_workers([], 20)
    expect(@workers).to be_truthy, "the workers never served:\n#{@server.log}"
    done = wait_until(5) do
      of_master("after") >= 1 && of_master("every") >= 3 && of_master("run") >= 1 &&
        of_master("cancel_timer true") >= 1
    end
    expect(done).to be(true), "the master ran #{events.select { |pid, _| pid == @master }.map(&:last).tally}; " \
                              "the workers #{noted_by_workers.tally}"
    cancelled = of_master("cancelled")
    sleep 0.6
    expect(of_master("cancelled")).to eq(cancelled), "the cancelled timer kept running"
    expect(cancelled).to be >= 1
    expect(%w[after every run].to_h { |e| [e, of_master(e)] }).to eq("after" => 1, "every" => 3, "run" => 1)
    expect(of_master("tick")).to be >= 2
    expect(noted_by_workers.tally).to eq({})
  end

  it "a timer made by the master's Iodine.subscribe block (a worker published) runs in the master" do
    expect(http_get(@server.port, "/pub?hello").code).to eq("200")
    ran = wait_until(5) { of_master("sub hello") == 1 }
    expect(ran).to be(true), "the master's timer never ran (workers noted #{noted_by_workers.tally})"
    expect(noted_by_workers.tally).to eq({})
  end

  it "after a USR1, the new workers took none of the master's timers; the master's run_every goes on" do
    ticks = of_master("tick")
    @server.signal("USR1")
    replaced = two_serving_workers(@workers || children(@master))
    expect(replaced).to be_truthy, "the hot restart did not replace both workers:\n#{@server.log}"
    sleep 1
    expect(noted_by_workers.tally).to eq({})
    expect(of_master("tick")).to be > ticks
    expect(%w[after every run sub\ hello].to_h { |e| [e, of_master(e)] })
      .to eq("after" => 1, "every" => 3, "run" => 1, "sub hello" => 1)
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
  end
end
