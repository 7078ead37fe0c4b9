# frozen_string_literal: true

require "stringio"
require "monitor"
require "socket"
require "uri" # Rack 2.2's Lint and Request use URI without requiring it
require_relative "iodine/version"

# The Rust extension. The platform gem (`rake native_gem`) carries it prebuilt for each Ruby
# ABI it supports, lib/iodine/3.1/iodine.so, and builds nothing at install; the source gem
# (extconf + cargo at install) and the dev tree (`rake compile`) have iodine/iodine.so.
# require_relative for the prebuilt one: this gem's own copy, never another installed iodine's.
iodine_abi = RUBY_VERSION[/\d+\.\d+/]
begin
  require_relative "iodine/#{iodine_abi}/iodine"
rescue LoadError
  raise if File.directory?(File.join(__dir__, "iodine", iodine_abi)) # there but unloadable: that error
  begin
    require "iodine/iodine"
  rescue LoadError
    bundled = Dir[File.join(__dir__, "iodine", "[0-9]*.[0-9]*", "iodine.*")].map { |so| File.basename(File.dirname(so)) }
    raise if bundled.empty? # not a platform gem: the plain "cannot load such file"
    raise LoadError, "iodine #{Iodine::VERSION}: this precompiled gem holds the extension for Ruby " \
                     "#{bundled.sort.join(', ')} only, not for Ruby #{RUBY_VERSION}; install the source gem " \
                     "(builds with Rust): gem install iodine --platform ruby", cause: nil
  end
end

# Iodine: a fast, concurrent web application server for real-time Ruby apps, written in Rust.
#
# Listen, then start:
#
#   Iodine.listen service: :http, handler: app, port: 3000
#   Iodine.threads = 4
#   Iodine.start
module Iodine
  # Default options merged into every `listen`/`connect` call (a plain mutable Hash).
  DEFAULT_SETTINGS = {}
  # Deprecated alias: the same Hash as DEFAULT_SETTINGS.
  DEFAULT_HTTP_ARGS = DEFAULT_SETTINGS

  @threads = 0
  @workers = 0
  @mode = :idle

  class << self
    # Threads per worker used by `start`, as last set (0 when never set).
    attr_reader :threads

    # Worker processes, as last set (0 when never set).
    attr_reader :workers

    # Sets the Ruby threads per worker: 0 = auto, negative = CPU cores / abs(n).
    def threads=(count)
      raise TypeError, "threads must be an Integer" unless count.is_a?(Integer)
      raise RangeError, "threads must be less than 4096" if count >= 4096

      @threads = count
    end

    # Sets the worker process count: 1 = single process, 0 = auto, negative = cores / abs(n).
    def workers=(count)
      raise TypeError, "workers must be an Integer" unless count.is_a?(Integer)
      raise RangeError, "workers must be less than 512" if count >= 512

      @workers = count
    end

    # True in the root process (and in the single process while it runs).
    def master?
      @mode != :worker
    end

    # True in worker processes and in a running single process.
    def worker?
      @mode == :single || @mode == :worker
    end

    # Opens a listening socket; see Iodine::Base::Listen for the options.
    def listen(options, &block)
      Base::Listen.call(options, block)
    end

    # Opens a client connection (raw TCP/Unix or WebSocket); see Iodine::Base::Connect.
    # Returns Iodine. Failures reach the handler's `on_close` (without `on_open`).
    def connect(options)
      Base::Connect.call(options)
    end

    # Adopts a connected socket: a duplicate of `fd` becomes a raw connection handled by
    # `handler` (the caller still owns, and closes, `fd`). Returns the handler.
    def attach_fd(fd, handler)
      raise TypeError, "fd must be an Integer" unless fd.is_a?(Integer)
      raise ArgumentError, "a handler is required (not nil, true or false)" if [nil, true, false].include?(handler)

      Base.attach_fd(fd, handler)
      handler
    end

    # Runs the server until `stop` (or INT/TERM); returns Iodine.
    def start
      # `@starting` covers the boot hooks (`:pre_start` runs before the server does): a
      # nested start there would run a second server the outer one could never stop.
      # The pid: a process forked by a running app may start a server of its own.
      raise "Iodine already running!" if running? || @starting == Process.pid

      @starting = Process.pid
      begin
        Cable.install # an app that loaded Action Cable gets its WebSockets served natively
        Base::Runner.new(threads: @threads, workers: @workers).run { |mode| @mode = mode }
      ensure
        @starting = nil
        @mode = :idle
      end
      self
    end

    # Runs the block on a worker thread as soon as possible (after `start` when not running
    # yet). Returns the block.
    def run(&block)
      raise LocalJumpError, "no block given" unless block

      Base.schedule(block, 0, nil, nil)
    end
    alias defer run

    # Runs the block once, `milliseconds` from now (from `start` when not running yet);
    # nil or 0 is `run`. Returns the block.
    def run_after(milliseconds, &block)
      raise LocalJumpError, "no block given" unless block
      return run(&block) if milliseconds.nil? || milliseconds == 0 # rubocop:disable Style/NumericPredicate
      raise TypeError, "milliseconds must be a number" unless milliseconds.is_a?(Integer)

      Base.schedule(block, [milliseconds, 0].max, nil, nil)
    end

    # Runs the block every `milliseconds`, `repetitions` times (nil or 0: until shutdown).
    # Returns the block.
    def run_every(milliseconds, repetitions = nil, &block)
      raise LocalJumpError, "no block given" unless block
      raise TypeError, "milliseconds must be a number" unless milliseconds.is_a?(Integer)
      raise TypeError, "repetitions must be a number" unless repetitions.nil? || repetitions.is_a?(Integer)

      period = [milliseconds, 1].max
      repetitions = nil if repetitions&.<=(0)
      Base.schedule(block, period, period, repetitions)
    end

    # Stops the timer that runs `block` (as returned by run_after / run_every); true if it
    # was scheduled, false otherwise.
    def cancel_timer(block)
      Base.cancel_timer(block)
    end

    # Runs the block once, the next time the server has nothing to do. Returns the block.
    def on_idle(&block)
      raise LocalJumpError, "no block given" unless block

      Base.on_idle(block)
    end

    # Lifecycle events `on_state` accepts (section 11 of the API).
    STATES = %i[pre_start before_fork after_fork enter_child enter_master on_start on_parent_crush
                on_child_crush start_shutdown on_finish].freeze

    # Registers the block for a lifecycle event; every block runs each time the event fires.
    def on_state(event, &block)
      raise TypeError, "event must be a Symbol" unless event.is_a?(Symbol)
      raise TypeError, "unknown event in Iodine.on_state" unless STATES.include?(event)
      raise LocalJumpError, "no block given" unless block

      (Base.state_callbacks[event] ||= []) << block
      block
    end

    # Deprecated: on_state(:before_fork).
    def before_fork(*_args, &block)
      Base.deprecated_state(:before_fork, "Iodine.before_fork", &block)
    end

    # Deprecated: on_state(:after_fork).
    def after_fork(*_args, &block)
      Base.deprecated_state(:after_fork, "Iodine.after_fork", &block)
    end

    # Deprecated: on_state(:enter_child).
    def after_fork_in_worker(*_args, &block)
      Base.deprecated_state(:enter_child, "Iodine.after_fork_in_worker", &block)
    end

    # Deprecated: on_state(:enter_master).
    def after_fork_in_master(*_args, &block)
      Base.deprecated_state(:enter_master, "Iodine.after_fork_in_master", &block)
    end

    # Deprecated: on_state(:on_finish).
    def on_shutdown(*_args, &block)
      Base.deprecated_state(:on_finish, "Iodine.on_shutdown", &block)
    end

    # Asks the server to stop gracefully (finishes in-flight requests).
    def stop
      Base.request_stop
      Base::Runner.wake
      Base.cluster_wake # a cluster's master polls its workers' sockets instead
      self
    end
  end

  # Internal helpers (not public API).
  module Base
    # How many Ruby worker threads are alive (0 when the server is not running); for
    # diagnostics and the specs.
    def self.workers_alive
      Runner.pool&.count(&:alive?) || 0
    end

    # Blocks registered with Iodine.on_state, by event.
    def self.state_callbacks
      @state_callbacks ||= {}
    end

    # Registers a block through a deprecated name, with a warning.
    def self.deprecated_state(event, name, &block)
      log(3, "#{name} is deprecated, use Iodine.on_state(#{event.inspect})")
      Iodine.on_state(event, &block)
    end

    # Runs the blocks of `event` in order; one that raises is logged and the rest still run.
    def self.fire_state(event)
      (state_callbacks[event] || []).each do |callback|
        callback.call
      rescue StandardError => e
        log(2, "Iodine.on_state(#{event.inspect}) block raised #{e.class}: #{e.message}")
      end
    end
  end
end

require_relative "iodine/rack_body"
require_relative "iodine/hijack"
require_relative "iodine/tls"
require_relative "iodine/listen"
require_relative "iodine/connect"
require_relative "iodine/runner"
require_relative "iodine/cluster"
require_relative "iodine/cli"
require_relative "iodine/mustache"
require_relative "iodine/pubsub"
require_relative "iodine/redis"
require_relative "iodine/connection"
require_relative "iodine/rack_utils"
require_relative "iodine/cable"
require_relative "iodine/deprecated"
require_relative "iodine/rack_handler"
require_relative "iodine/warmup"
require_relative "iodine/fork_protection"

Iodine::Rack.register_handlers

Iodine::Base::CLI.parse(ARGV) if defined?(IODINE_PARSE_CLI) && IODINE_PARSE_CLI
Iodine::DEFAULT_SETTINGS[:port] ||= (ENV["PORT"] || "3000")
Iodine::DEFAULT_SETTINGS[:address] ||= nil
require_relative "iodine/top_level"

# -C FILE, for every script that parses the command line (§1.1 step 11), not only exe/iodine.
if (conf = Iodine::DEFAULT_SETTINGS.delete(:conf_))
  require File.expand_path(conf)
end

