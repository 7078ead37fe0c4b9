# frozen_string_literal: true

require "spec_helper"
require "open3"
require "json"

# The on_state events of one process in the order they fire (api.md §11), the deprecated
# hooks that register for them (§1.4), and Iodine.cancel_timer; each in a real server process
# that stops itself.
RSpec.describe "lifecycle events and timer cancellation (one process)" do
  include ScriptRunner

  # One process, said so explicitly.
  def run_script(body, **opts)
    super(body, prelude: "Iodine.workers = 1", **opts)
  end

  it "fires pre_start, before_fork, after_fork, enter_master, on_start, then start_shutdown and on_finish, once each" do
    result, err, status = run_script(<<~RUBY)
      log = Queue.new
      %i[pre_start before_fork after_fork enter_child enter_master on_start on_parent_crush on_child_crush
         start_shutdown on_finish].each { |event| Iodine.on_state(event) { log << event.to_s } }
      Iodine.run_after(200) { Iodine.stop }
      Iodine.start
      list = []
      list << log.pop until log.empty?
      puts JSON.generate(list)
    RUBY
    expect(status.success?).to be(true), err
    expect(result).to eq(%w[pre_start before_fork after_fork enter_master on_start start_shutdown on_finish])
  end

  it "keeps the deprecated hooks: each warns on stderr and registers its block for its event" do
    result, err, status = run_script(<<~RUBY)
      log = Queue.new
      Iodine.before_fork { log << "before_fork" }
      Iodine.after_fork { log << "after_fork" }
      Iodine.after_fork_in_master { log << "after_fork_in_master" }
      Iodine.after_fork_in_worker { log << "after_fork_in_worker" }
      Iodine.on_shutdown { log << "on_shutdown" }
      $stderr.puts "-- registered --"
      Iodine.run_after(200) { Iodine.stop }
      Iodine.start
      list = []
      list << log.pop until log.empty?
      puts JSON.generate(list)
    RUBY
    expect(status.success?).to be(true), err
    # after_fork_in_worker is :enter_child, which never fires in one process.
    expect(result).to eq(%w[before_fork after_fork after_fork_in_master on_shutdown])
    warnings = err.split("-- registered --").first.lines
    %w[before_fork after_fork after_fork_in_master after_fork_in_worker on_shutdown].each do |name|
      warned = warnings.any? { |line| line.match?(/deprecat/i) && line.match?(/(?<!\w)#{name}(?!\w)/) }
      expect(warned).to be(true), "no deprecation warning naming #{name} in:\n#{warnings.join}"
    end
  end

  it "cancel_timer stops a run_every timer and a pending run_after, answering true once and false after" do
    result, err, status = run_script(<<~RUBY)
      out = {}
      lock = Mutex.new
      ticks = 0
      every = Iodine.run_every(20) { lock.synchronize { ticks += 1 } }
      once = Iodine.run_after(400) { out["once ran"] = true }
      out["run_every answers a Proc"] = every.is_a?(Proc)
      Iodine.run_after(150) do
        out["ticks before"] = lock.synchronize { ticks }
        out["cancel every"] = Iodine.cancel_timer(every)
        out["cancel once"] = Iodine.cancel_timer(once)
        at_cancel = lock.synchronize { ticks }
        Iodine.run_after(400) do
          out["ticks after"] = lock.synchronize { ticks } - at_cancel
          out["cancel every again"] = Iodine.cancel_timer(every)
          out["cancel a Proc never scheduled"] = Iodine.cancel_timer(proc {})
          Iodine.stop
        end
      end
      Iodine.start
      puts JSON.generate(out)
    RUBY
    expect(status.success?).to be(true), err
    expect(result).to include("run_every answers a Proc" => true, "cancel every" => true, "cancel once" => true,
                              "cancel every again" => false, "cancel a Proc never scheduled" => false)
    expect(result["ticks before"]).to be >= 3
    expect(result["ticks after"]).to be <= 1 # one tick may have been on its way when cancelled
    expect(result).not_to have_key("once ran")
  end

  it "cancel_timer works from inside the timer's own block, and answers false for a run_after that already ran" do
    result, err, status = run_script(<<~RUBY)
      out = { "ticks" => 0 }
      every = Iodine.run_every(20) do
        out["ticks"] += 1
        out["cancel inside"] = Iodine.cancel_timer(every) if out["ticks"] == 3
      end
      done = Iodine.run_after(30) { out["ran"] = true }
      Iodine.run_after(400) do
        out["cancel after it ran"] = Iodine.cancel_timer(done)
        Iodine.stop
      end
      Iodine.start
      puts JSON.generate(out)
    RUBY
    expect(status.success?).to be(true), err
    expect(result).to eq("ticks" => 3, "cancel inside" => true, "ran" => true, "cancel after it ran" => false)
  end
end
