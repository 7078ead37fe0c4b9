# frozen_string_literal: true

module Iodine
  module Base
    class Runner
      # Cluster mode (`-w 2` and more): this process is the master. It forks the workers
      # (each serves the listeners bound before `start`, with its own IO runtime and Ruby
      # threads), routes pub/sub between them, replaces workers that die, and restarts them
      # one by one on USR1. The master itself never serves clients and never runs a tokio
      # runtime or a thread of its own, so it can fork at any time.
      #
      # Each worker has a slot (0 ... workers - 1): before the first fork every TCP listener
      # becomes one socket per slot (SO_REUSEPORT: the kernel spreads new connections over
      # them), which the master keeps open while the cluster runs. A worker serves its slot's
      # sockets, and the worker that replaces it (respawn, hot restart) takes the same slot,
      # so the connections queued there wait for it instead of being reset. Unix listeners
      # stay one socket that all workers share.
      #
      # Signals in the master: INT/TERM stop the whole cluster (workers get TERM and finish
      # their in-flight work; one still running after the grace period is killed); USR1 is a
      # hot restart. A worker's INT/TERM/USR1 (or `Iodine.stop` in it) ends only that worker,
      # and the master starts a new one.
      class Cluster
        # Seconds workers get to finish after TERM before they are killed.
        STOP_GRACE = SHUTDOWN_GRACE + 2
        # How long one turn of the master's loop waits for pub/sub traffic (milliseconds).
        TURN_MS = 200
        # A worker that dies sooner than this after its fork is replaced only after this long
        # (a worker that fails at boot would otherwise be forked in a tight loop).
        QUICK_DEATH = 1.0

        def initialize(runner, workers, threads)
          @runner = runner
          @size = workers
          @threads = threads
          @children = {} # pid => peer id
          @slots = {} # pid => the worker's slot
          @born = {} # pid => when it was forked
          @respawns = [] # [when to fork the next replacement, its slot]
          @retiring = [] # pids being replaced by a hot restart
          @restart_queue = []
          @stopping = false
          @redis = {} # pid => Redis engine number (its Redis process)
          @redis_respawns = [] # [engine number, when to fork its next Redis process]
        end

        def run(&block)
          previous = {}
          %w[INT TERM].each do |sig|
            previous[sig] = trap(sig) do
              force_stop(sig) if Runner.repeated_stop_signal?(:master) && @stopping
              request(:stop)
              Runner.chain(previous[sig], sig)
            end
          end
          previous["USR1"] = trap("USR1") do
            request(:restart)
            Runner.chain(previous["USR1"], "USR1")
          end
          # HUP: every worker reads its TLS certificate files again.
          previous["HUP"] = trap("HUP") do
            @children.each_key { |pid| signal(pid, "HUP") }
            Runner.chain(previous["HUP"], "HUP")
          end
          # The app's own traps, for the workers to chain (not the master's: a worker that
          # ran them would stop a copy of this cluster, and force it, killing its siblings).
          @app_traps = previous
          @runner.raise_open_files_limit # the workers inherit it
          Base.fire_state(:pre_start)
          Base.cluster_master_init(@size)
          # The banner comes before the workers accept: whoever waits for the port sees it.
          Base.log(4, "Starting up Iodine #{Iodine::VERSION} (Rust) on Ruby #{RUBY_VERSION}: " \
                      "#{@size} Workers X #{@threads} Threads per worker, " \
                      "max open files #{Runner.open_files}, master pid #{Process.pid}")
          Base.pending_listeners.each { |where| Base.log(4, "Listening on #{where}") }
          Base.redis_count.times { |id| spawn_redis(id) }
          @size.times { |slot| spawn_worker(slot, &block) }
          block&.call(:master)
          supervise(&block)
        ensure
          stop_workers
          previous.each { |sig, handler| trap(sig, handler || "DEFAULT") }
        end

        private

        # A second INT/TERM while stopping: the workers are killed and the master exits now.
        def force_stop(sig)
          @children.each_key { |pid| signal(pid, "KILL") }
          Runner.force_exit(sig)
        end

        # A trap only sets flags (and wakes the poll): the work happens in the main loop.
        def request(what)
          if what == :stop
            @stopping = true
            Base.request_stop
          else
            @restart_requested = true
          end
          Base.cluster_wake
        end

        def supervise(&block)
          until @stopping || Base.stop_flag?
            Base.cluster_poll(TURN_MS)
            Base.run_pending
            reap
            respawn(&block)
            restart_step(&block)
          end
        end

        # Forks the worker of `slot`; in the child this never returns.
        def spawn_worker(slot, &block)
          Base.fire_state(:before_fork)
          peer = Base.cluster_pair
          pid = Process.fork { worker_main(slot, &block) }
          Base.cluster_forked_parent
          @children[pid] = peer
          @slots[pid] = slot
          @born[pid] = now
          Base.fire_state(:after_fork)
          Base.fire_state(:enter_master)
          pid
        end

        # Forks the Redis process of Redis engine `id`: it holds the engine's two connections
        # for the whole cluster and talks to this master like a worker. It serves nobody,
        # runs no app code or hooks, and ends when the master's end of its pair closes.
        def spawn_redis(id)
          Base.cluster_pair_engine(id)
          pid = Process.fork do
            # A group Ctrl-C (or systemd's TERM to the whole group) is the master's to handle:
            # this process ends when the master lets go of it, after the workers finished (so
            # their goodbyes still reach Redis). KILL ends it; the master then starts another.
            %w[INT TERM USR1 HUP].each { |sig| trap(sig, "IGNORE") }
            Process.setproctitle("iodine: Redis process (master #{Process.ppid})")
            status = 0
            begin
              Base.redis_child_main(id)
            rescue Exception => e # rubocop:disable Lint/RescueException
              Base.log(1, "Redis process #{Process.pid} failed: #{e.class}: #{e.message}")
              status = 1
            end
            $stderr.flush
            exit!(status)
          end
          Base.cluster_forked_parent
          @redis[pid] = id
          @born[pid] = now
        end

        def worker_main(slot, &block)
          # The worker's own traps come first, before its boot hooks: a TERM that arrives
          # while they run is a graceful stop, honoured once the worker serves.
          Runner.stop_signal_at = nil
          Runner.trap_signals(:worker, @app_traps)
          Base.cluster_forked_child(slot)
          block&.call(:worker) # master?/worker? are right from the first event on
          status = 0
          begin
            Base.fire_state(:after_fork)
            Base.fire_state(:enter_child)
            @runner.run_process(:worker) { |mode| block&.call(mode) }
          rescue Exception => e # rubocop:disable Lint/RescueException
            Base.log(1, "worker #{Process.pid} failed: #{e.class}: #{e.message}")
            status = 1
          end
          # at_exit handlers belong to the master (test runners, servers): a worker just ends.
          $stdout.flush
          $stderr.flush
          exit!(status)
        end

        def now
          Process.clock_gettime(Process::CLOCK_MONOTONIC)
        end

        # Forks the replacements that are due.
        def respawn(&block)
          return if @stopping || Base.stop_flag?

          due, @respawns = @respawns.partition { |at, _| at <= now }
          due.each { |_, slot| spawn_worker(slot, &block) }
          due_redis, @redis_respawns = @redis_respawns.partition { |_, at| at <= now }
          due_redis.each { |id, _| spawn_redis(id) }
        end

        # Collects workers that ended and schedules their replacements.
        def reap
          loop do
            pid, status = Process.wait2(-1, Process::WNOHANG)
            break unless pid
            next if reap_redis(pid, status)
            next unless @children.delete(pid)

            slot = @slots.delete(pid) || 0
            lived = now - (@born.delete(pid) || now)
            if @retiring.delete(pid)
              Base.log(4, "worker #{pid} replaced")
              next # its replacement started before it was told to leave
            elsif status.success?
              Base.log(3, "Child worker (#{pid}) exited; starting a new one") unless @stopping
            else
              Base.log(2, "Child worker (#{pid}) crashed. Respawning worker.")
              Base.fire_state(:on_child_crush)
            end
            next if @stopping || Base.stop_flag?

            if lived < QUICK_DEATH
              Base.log(2, "worker #{pid} died #{lived.round(2)} s after it started; the next one starts in #{QUICK_DEATH} s")
              @respawns << [now + QUICK_DEATH, slot]
            else
              @respawns << [now, slot]
            end
          end
        rescue Errno::ECHILD
          nil
        end

        # A Redis process ended: a new one starts (after QUICK_DEATH if it died young).
        def reap_redis(pid, status)
          return false unless (id = @redis.delete(pid))

          lived = now - (@born.delete(pid) || now)
          return true if @stopping || Base.stop_flag?

          Base.log(2, "Redis process #{pid} ended (#{status.inspect}); starting a new one")
          @redis_respawns << [id, now + (lived < QUICK_DEATH ? QUICK_DEATH : 0)]
          true
        end

        # USR1: each worker is replaced in turn: a new one starts (in the old one's slot), then
        # the old one is told to finish; the next waits until it left. The listeners stay open
        # throughout, and there are always at least as many workers as configured.
        def restart_step(&block)
          if @restart_requested
            @restart_requested = false
            Base.log(4, "Hot restart: replacing #{@children.size} workers")
            @restart_queue |= @children.keys
          end
          return if @restart_queue.empty? || @retiring.any? { |pid| @children.key?(pid) }

          old = @restart_queue.shift
          return unless @children.key?(old)

          spawn_worker(@slots.fetch(old, 0), &block)
          @retiring << old
          # USR1 (a worker's "leave"), not TERM: a worker counts INT/TERM to tell a repeat
          # from outside, and a group Ctrl-C while it finishes must not count as one.
          signal(old, "USR1")
        end

        # Waits (up to 2 s) for the Redis processes to end, then kills what is left.
        def stop_redis
          deadline = now + 2
          until @redis.empty? || now > deadline
            @redis.delete_if { |pid, _| Process.wait(pid, Process::WNOHANG) rescue true } # rubocop:disable Style/RescueModifier
            sleep 0.02 unless @redis.empty?
          end
          @redis.each_key do |pid|
            signal(pid, "KILL")
            Process.wait(pid) rescue nil # rubocop:disable Style/RescueModifier
          end
          @redis.clear
        end

        def signal(pid, sig)
          Process.kill(sig, pid)
        rescue Errno::ESRCH
          nil
        end

        # Graceful stop of the whole cluster: TERM, then wait (still routing pub/sub, so
        # goodbyes published by on_shutdown arrive), then KILL what is left.
        def stop_workers
          @stopping = true
          Base.fire_state(:start_shutdown)
          Base.log(4, "Shutting down the cluster (#{@children.size} workers)")
          # Workers a hot restart already told to leave are not signalled twice.
          @children.each_key { |pid| signal(pid, "TERM") unless @retiring.include?(pid) }
          deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + STOP_GRACE
          until @children.empty? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            Base.cluster_poll(50)
            Base.run_pending
            reap
          end
          # What the last workers sent just before they exited (read with their EOF) is
          # routed before the hub goes.
          Base.cluster_poll(0)
          Base.run_pending
          @children.each_key do |pid|
            Base.log(2, "worker #{pid} did not stop in time; killing it")
            signal(pid, "KILL")
            Process.wait(pid) rescue nil # rubocop:disable Style/RescueModifier
          end
          @children.clear
          Base.cluster_master_finish # closes the Redis processes' pairs: they end
          stop_redis
          Base.fire_state(:on_finish)
          Base.log(4, "Shutdown Complete")
        end
      end
    end
  end
end
