# frozen_string_literal: true

require "stringio"
require "socket"
require "uri" # Rack 2.2's Lint and Request use URI without requiring it
require_relative "iodine/version"
require "iodine/iodine" # the Rust extension: lib/iodine/iodine.so

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

    # Runs the server until `stop` (or INT/TERM); returns Iodine.
    def start
      raise "Iodine already running!" if running?

      Base::Runner.new(threads: @threads, workers: @workers).run { |mode| @mode = mode }
      self
    ensure
      @mode = :idle
    end

    # Asks the server to stop gracefully (finishes in-flight requests).
    def stop
      Base.request_stop
      Base::Runner.wake
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
  end
end

require_relative "iodine/rack_body"
require_relative "iodine/listen"
require_relative "iodine/runner"
require_relative "iodine/cli"
require_relative "iodine/mustache"
require_relative "rack/handler/iodine"

Iodine::Base::CLI.parse(ARGV) if defined?(IODINE_PARSE_CLI) && IODINE_PARSE_CLI
Iodine::DEFAULT_SETTINGS[:port] ||= (ENV["PORT"] || "3000")
Iodine::DEFAULT_SETTINGS[:address] ||= nil
