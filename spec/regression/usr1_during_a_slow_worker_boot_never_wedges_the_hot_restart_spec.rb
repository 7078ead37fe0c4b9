# frozen_string_literal: true

require "spec_helper"
require "set"
require "tmpdir"
require_relative "../support/process_tree"

# A second USR1 while the first hot restart's new worker still runs its (slow) boot hooks
# queues that booting worker for replacement too: it is told to leave during its hooks, and
# must leave once it serves. It used to ignore that TERM (lost during the hooks), so the
# restart waited on it for good: three workers instead of two, and no later USR1 restarted
# anything. Now the cluster settles back to two workers, and the next USR1 replaces both.
RSpec.describe "USR1 during a slow worker boot" do
  include ProcessTree

  around do |example|
    Dir.mktmpdir("iodine-usr1-boot") do |dir|
      @events = File.join(dir, "events")
      @app = File.join(dir, "slow_boot.ru")
      File.write(@app, <<~RUBY)
        EVENTS = #{@events.inspect}
        def note(line) = File.write(EVENTS, "\#{Process.pid} \#{line}\\n", mode: "a")
        Iodine.on_state(:enter_child) { sleep 1 }
        Iodine.on_state(:on_start) { note("on_start") }
        run ->(_env) { [200, { "content-type" => "text/plain" }, [Process.pid.to_s]] }
      RUBY
      example.run
    end
  end

  after do
    @watcher&.kill
    if @server
      @seen.merge(children(@server.pid)) unless @server.exited?
      @server.stop("KILL")
    end
    kill_all(@seen.to_a)
  end

  def serving
    serving_pids(@events)
  end

  # The master's workers once there are exactly two, both serving and none of `old`, steady for
  # half a second; nil after `seconds`.
  def two_new_workers(old, seconds)
    wait_until(seconds) do
      pids = children(@server.pid)
      @seen.merge(pids)
      next false unless pids.size == 2 && (pids & old).empty? && pids.all? { |pid| serving.include?(pid) }

      sleep 0.5
      children(@server.pid) == pids && pids
    end
  end

  # GET / on fresh connections until every pid of `pids` answered (bounded); the pids that did.
  def answering(pids, seconds = 10)
    seen = Set.new
    deadline = now + seconds
    seen << http_get(@server.port, "/").body.to_i until pids.to_set.subset?(seen) || now > deadline
    seen
  end

  it "a second USR1 0.5 s after the first: the workers settle back to two new ones, and a third USR1 " \
     "still replaces both" do
    @seen = Set.new
    @server = ServerProcess.new(["-w", "2", "-t", "1", @app], wait_for: nil)
    first = two_new_workers([], 20)
    expect(first).to be_truthy, "the cluster never had two serving workers:\n#{@server.log}"

    counts = []
    watching = true
    @watcher = Thread.new do
      while watching
        pids = children(@server.pid)
        @seen.merge(pids)
        counts << pids.size
        sleep 0.02
      end
    end
    @server.signal("USR1")
    sleep 0.5
    @server.signal("USR1")
    second = two_new_workers(first, 15)
    watching = false
    @watcher.join(2)
    expect(second).to be_truthy,
                      "15 s after two USR1s the master has #{children(@server.pid).size} workers " \
                      "(#{children(@server.pid)}; first ones #{first})\n#{@server.log}"
    expect(counts.max).to be <= 3, "workers at once during the restarts: #{counts.tally}"
    expect(answering(second)).to eq(second.to_set)

    @server.signal("USR1")
    third = two_new_workers(second, 15)
    expect(third).to be_truthy,
                     "a later USR1 replaced nothing: workers #{children(@server.pid)} (before it: #{second})\n#{@server.log}"
    expect(answering(third)).to eq(third.to_set)
    replaced = @server.log.scan(/worker (\d+) replaced/).flatten.map(&:to_i)
    expect(replaced).to include(*first, *second)
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
  end
end
