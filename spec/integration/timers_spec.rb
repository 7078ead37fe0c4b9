# frozen_string_literal: true

require "spec_helper"
require "open3"
require "json"

# Iodine.run / defer / run_after / run_every / on_idle and the single-process on_state events,
# each in a real server process that stops itself.
RSpec.describe "timers, deferred blocks and lifecycle events" do
  include ScriptRunner

  it "runs each kind of block the right number of times, on worker threads, and fires the events in order" do
    result, err, status = run_script(<<~RUBY)
      log = Queue.new
      %i[pre_start on_start start_shutdown on_finish].each { |e| Iodine.on_state(e) { log << e.to_s } }
      Iodine.run { log << "run:" + Thread.current.name.to_s }
      Iodine.defer { log << "defer" }
      Iodine.run_after(100) { log << "after" }
      Iodine.run_every(30, 3) { log << "every" }
      Iodine.run_every(20) { log << "forever" }
      Iodine.on_idle { log << "idle" }
      Iodine.run_after(300) { Iodine.run { log << "run-while-running" } }
      Iodine.run_after(500) { Iodine.stop }
      Iodine.start
      list = []
      list << log.pop until log.empty?
      puts JSON.generate(list)
    RUBY
    expect(status.success?).to be(true), err
    counts = result.tally
    expect(counts.values_at("defer", "after", "every", "idle", "run-while-running")).to eq([1, 1, 3, 1, 1])
    expect(counts["forever"]).to be_between(10, 30)
    expect(result.grep(/\Arun:/)).to eq(["run:iodine-worker-0"]).or eq(["run:iodine-worker-1"])
    events = result & %w[pre_start on_start start_shutdown on_finish]
    expect(events).to eq(%w[pre_start on_start start_shutdown on_finish])
    expect(result.first).to eq("pre_start")
    expect(result.last).to eq("on_finish")
  end

  it "logs a block that raises and keeps serving; a block that kills its thread costs no worker" do
    result, err, status = run_script(<<~RUBY)
      Iodine.verbosity = 2
      Iodine.run_after(50) { raise "timer boom" }
      Iodine.run_after(100) { Thread.current.kill }
      Iodine.on_state(:on_start) { Iodine.on_state(:start_shutdown) { $alive = Iodine::Base.workers_alive } }
      ran = Queue.new
      Iodine.run_after(400) { ran << :later }
      Iodine.run_after(600) { Iodine.stop }
      Iodine.start
      puts JSON.generate([ran.size, $alive])
    RUBY
    expect(status.success?).to be(true), err
    expect(result).to eq([1, 2])
    expect(err).to include("timer boom")
    expect(err).to match(/worker thread iodine-worker-\d died/)
  end

  it "logs an on_state block that raises and runs the next ones" do
    result, err, status = run_script(<<~RUBY)
      order = Queue.new
      Iodine.on_state(:on_start) { raise "state boom" }
      Iodine.on_state(:on_start) { order << "second"; Iodine.stop }
      Iodine.start
      puts JSON.generate([order.size])
    RUBY
    expect(status.success?).to be(true), err
    expect(result).to eq([1])
    expect(err).to include("state boom")
  end

  it "validates its arguments like the C gem" do
    result, err, status = run_script(<<~RUBY)
      errors = []
      [-> { Iodine.run_after("10") {} }, -> { Iodine.run_every(nil) {} }, -> { Iodine.run_every(10, "x") {} },
       -> { Iodine.on_state("pre_start") {} }, -> { Iodine.on_state(:nope) {} }, -> { Iodine.run },
       -> { Iodine.on_idle }].each do |call|
        call.call
        errors << "none"
      rescue TypeError, LocalJumpError => e
        errors << "\#{e.class}: \#{e.message}"
      end
      errors << Iodine.run_after(nil) { Iodine.stop }.class.name
      Iodine.start
      puts JSON.generate(errors)
    RUBY
    expect(status.success?).to be(true), err
    expect(result).to eq([
      "TypeError: milliseconds must be a number", "TypeError: milliseconds must be a number",
      "TypeError: repetitions must be a number", "TypeError: event must be a Symbol",
      "TypeError: unknown event in Iodine.on_state", "LocalJumpError: no block given",
      "LocalJumpError: no block given", "Proc"
    ])
  end
end
