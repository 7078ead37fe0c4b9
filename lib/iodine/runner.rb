# frozen_string_literal: true

module Iodine
  module Base
    # Runs the server in this process: starts the IO runtime and the Ruby worker threads,
    # waits for a stop (Iodine.stop, INT, TERM), then shuts down gracefully.
    class Runner
      # Most cores auto-detection counts (the C gem's FIO_CPU_CORES_LIMIT).
      CORES_LIMIT = 8
      # Seconds in-flight requests get to finish at shutdown: the whole stop takes at most
      # this (plus a moment), however many requests are stuck.
      SHUTDOWN_GRACE = 8
      # Exit status after a second INT/TERM cut a graceful stop short (a graceful stop: 0).
      FORCED_EXIT = 2

      def initialize(threads:, workers:)
        @threads, @workers = Runner.concurrency(threads, workers, Base.cores)
        @workers_requested = workers
      end

      # [threads, workers] as the C gem (facil.io's fio_expected_concurrency) computes them,
      # section 1.5 of the API spec:
      # - both 0: the cores (at most 8) for both, one worker less when cores > 3;
      # - any negative: cores / abs(value); a 0 counterpart takes the other's raw value
      #   negated; an auto-derived side loses one when the product (of the values derived
      #   before either lost one) reaches the cores (> 3);
      # - otherwise the values as given (a 0 left alone means one);
      # then at least one of each.
      def self.concurrency(threads, workers, cores)
        t = threads
        w = workers
        if t.zero? && w.zero?
          cores = cores.clamp(1, CORES_LIMIT)
          t = cores
          w = cores > 3 ? cores - 1 : cores
        elsif t.negative? || w.negative?
          cores = [cores, 1].max
          thread_adjust = t <= 0
          worker_adjust = w <= 0
          new_t =
            if t.negative? then cores / -t
            elsif t.zero?
              thread_adjust = false
              -w
            else t
            end
          if w.negative?
            w = cores / -w
          elsif w.zero?
            w = -t
            worker_adjust = false
          end
          t = new_t
          # Both checks use the workers as derived, before the first one took one away (as
          # facil.io does).
          derived_w = w
          w -= 1 if worker_adjust && derived_w * t >= cores && cores > 3
          t -= 1 if thread_adjust && t * derived_w >= cores && cores > 3
        end
        [[t, 1].max, [w, 1].max]
      end

      # Blocks until the server stopped; yields the process mode (:single, or :master and,
      # in each forked worker, :worker) when running.
      def run(&block)
        # A fresh start: a stop asked for before it (or left by an earlier run) is forgotten.
        # From here on, one asked for during the boot hooks is kept and honoured.
        Base.clear_stop_flag
        Runner.stop_signal_at = nil
        return Cluster.new(self, @workers, @threads).run(&block) if @workers > 1

        run_process(:single, &block)
      end

      # Serves in this process (one process, or a forked worker) until a stop. A worker's
      # traps were installed as it was forked (Runner.trap_signals), before its boot hooks.
      def run_process(mode)
        previous = {}
        pool = []
        raise_open_files_limit
        wake_r, wake_w = IO.pipe
        Runner.waker = wake_w
        Base.set_wake_fd(wake_w.fileno)
        previous = Runner.trap_signals(mode) unless mode == :worker
        if mode == :single
          Base.fire_state(:pre_start)
          # One process is its own only worker: the fork events fire as the C gem fired them
          # in single-process mode (the ActiveRecord/Sequel hooks included), without a fork.
          %i[before_fork after_fork enter_master].each { |event| Base.fire_state(event) }
        end
        # The banner comes before the listeners accept: whoever waits for the port sees it.
        if mode == :single
          Base.log(4, "Starting up Iodine #{Iodine::VERSION} (Rust) on Ruby #{RUBY_VERSION}: " \
                      "1 Worker X #{@threads} Threads, max open files #{Runner.open_files}, pid #{Process.pid}")
          Base.pending_listeners.each { |where| Base.log(4, "Listening on #{where}") }
        end
        Base.start_server(Base.cores, @threads)
        yield mode
        pool = Array.new(@threads) { |i| worker_thread(i) }
        Runner.pool = pool
        Base.fire_state(:on_start)
        # A Ruby-level wait (not a native one): Ruby wakes it for signals, so the INT/TERM
        # traps run here, in the main thread. A worker thread that ends also wakes it.
        until Base.stop_requested?
          wake_r.wait_readable
          wake_r.read_nonblock(4096, exception: false)
          heal(pool) unless Base.stop_requested?
        end
      ensure
        Base.fire_state(:on_parent_crush) if mode == :worker && Base.master_lost?
        shutdown(pool)
        Runner.pool = nil
        previous.each { |sig, handler| trap(sig, handler || "DEFAULT") }
        Base.set_wake_fd(-1)
        Runner.waker = nil
        [wake_r, wake_w].each { |io| io&.close }
      end

      # Seconds after the first INT/TERM of a stop before another one forces the exit. Sooner,
      # it is taken as part of the same stop: a terminal's Ctrl-C and systemd's
      # control-group stop signal the master and every worker at once, and the master then
      # tells its workers with TERM; a worker's grace period must survive all of that.
      FORCE_AFTER = { single: 0.3, master: 0.3, worker: 2.0 }.freeze

      class << self
        # The pipe end that wakes the main thread (nil when not running).
        attr_accessor :waker

        # When (monotonic seconds) the first INT/TERM of the current stop arrived (nil: none).
        attr_accessor :stop_signal_at

        # Installs the INT/TERM/USR1/HUP traps of a single process or a worker; the handlers in
        # `chained` (by signal name; by default the ones replaced) run after ours, as under
        # puma. INT/TERM stop gracefully; a worker's USR1 ends it (its master starts a new
        # one), a single process only logs it. Returns the handlers replaced.
        def trap_signals(mode, chained = nil)
          previous = {}
          %w[INT TERM USR1].each do |sig|
            previous[sig] = trap(sig) do
              if sig != "USR1"
                force_exit(sig) if repeated_stop_signal?(mode)
                Iodine.stop
              elsif mode == :worker
                Iodine.stop
              else
                Base.log(4, "USR1: a hot restart needs cluster mode (-w 2 or more); ignored")
              end
              chain((chained || previous)[sig], sig)
            end
          end
          # HUP: the TLS certificate files are read again (on a thread of its own: that takes
          # locks and reads files, which a trap must not).
          previous["HUP"] = trap("HUP") do
            Thread.new { Base.tls_reload_all }
            chain((chained || previous)["HUP"], "HUP")
          end
          previous
        end

        # Records an INT/TERM; true when it is a repeat from outside (FORCE_AFTER[mode]
        # seconds or more after the stop's first), which must cut the stop short.
        def repeated_stop_signal?(mode)
          now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          first = stop_signal_at
          self.stop_signal_at ||= now
          !first.nil? && now - first >= FORCE_AFTER.fetch(mode)
        end

        # The Ruby worker threads of the running server (nil when not running).
        attr_accessor :pool

        # The open-files limit each process serves with (the soft limit, raised to the hard one).
        def open_files
          Process.getrlimit(:NOFILE)[0]
        end

        # Calls `handler`, the trap that was in place before ours, when it is code (not
        # "DEFAULT", "IGNORE", "EXIT", ...).
        def chain(handler, sig)
          return unless handler.respond_to?(:call)

          handler.arity.zero? ? handler.call : handler.call(Signal.list.fetch(sig, 0))
        end

        # A second INT/TERM during a graceful stop: exits now, with status FORCED_EXIT (the
        # requests still running are cut).
        def force_exit(sig)
          $stderr.write_nonblock("WARNING: second SIG#{sig}: exiting now, without waiting for in-flight requests\n",
                                 exception: false)
          exit!(FORCED_EXIT)
        end

        # Wakes the main thread after a stop request (safe inside a trap).
        def wake
          waker&.write_nonblock(".", exception: false)
        rescue IOError
          nil
        end
      end

      # Lets the process hold as many connections as the hard limit allows (the soft limit is
      # often 1024), as the C gem did.
      def raise_open_files_limit
        soft, hard = Process.getrlimit(:NOFILE)
        Process.setrlimit(:NOFILE, hard, hard) if soft < hard
      rescue StandardError => e
        Base.log(3, "couldn't raise the open files limit: #{e.message}")
      end

      private

      def worker_thread(index)
        Thread.new do
          Thread.current.name = "iodine-worker-#{index}"
          Thread.current.report_on_exception = false
          begin
            nil while Base.worker_loop
          rescue Exception => e # rubocop:disable Lint/RescueException
            # Anything reaching here escaped the per-request handling (a Thread#raise from
            # elsewhere): log it and keep serving.
            Base.log(2, "worker thread error: #{e.class}: #{e.message}")
            retry if Iodine.running? && !Base.stop_requested?
          ensure
            # However it ends (Thread#kill included), the main thread looks at the pool.
            Runner.wake
          end
        end
      end

      # Replaces worker threads that died (an app that killed its thread, a stray jump), so
      # the pool stays at its size; each death is logged with what is known of its cause.
      def heal(pool)
        pool.each_with_index do |thread, index|
          next if thread.alive?

          Base.log(2, "worker thread #{thread.name} died (#{death_cause(thread)}); starting a new one")
          pool[index] = worker_thread(index)
        end
      end

      def death_cause(thread)
        thread.join(0)
        "killed or ended by a jump"
      rescue Exception => e # rubocop:disable Lint/RescueException
        "#{e.class}: #{e.message}"
      end

      def shutdown(pool)
        return unless Iodine.running?

        Base.log(4, "Shutting down (finishing in-flight requests)")
        Base.fire_state(:start_shutdown)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + SHUTDOWN_GRACE
        # Waited for here, in Ruby, where signals are handled: a second INT/TERM cuts it short.
        Base.begin_drain
        sleep 0.02 until Base.live_connections.zero? || Process.clock_gettime(Process::CLOCK_MONOTONIC) >= deadline
        Base.close_bridge
        # One deadline for all: threads still in the app when it passes are killed (their
        # `ensure` blocks run), never waited for one after another.
        pool.each { |t| t.join([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max) }
        stuck = pool.select(&:alive?)
        Base.log(3, "#{stuck.size} request(s) still running after #{SHUTDOWN_GRACE} s: stopped") unless stuck.empty?
        stuck.each(&:kill).each { |t| t.join(1) }
        Base.finish
        Base.fire_state(:on_finish)
        Base.log(4, "Shutdown Complete")
      end
    end
  end
end
