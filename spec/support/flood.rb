# frozen_string_literal: true

require "json"
require "open3"
require "securerandom"
require_relative "ws_frames"

# Shared by the flow-control regression specs (issue 18): the server is
# spec/support/apps/flood_servers.rb (an HTTP listener with WebSocket handlers and a raw
# listener, in one process); the flooding clients are spec/support/flood_client.rb processes;
# a Watch samples the server's RSS and times a bystander's GET / while they run.
module FloodHelpers
  CLIENT = File.join(__dir__, "flood_client.rb")
  SERVER = File.join(__dir__, "apps", "flood_servers.rb")
  MIB = 1024 * 1024
  # The issue's "done when": every flood costs the server under 64 MiB of RSS growth, and a
  # bystander's GET / is answered within 0.5 s during every flood.
  RSS_LIMIT = 64 * MIB
  BYSTANDER_LIMIT = 0.5

  # A flood_servers.rb process with `threads` Ruby workers; its raw listener is on #raw_port.
  class FloodServer < ServerProcess
    attr_reader :raw_port

    def initialize(threads:)
      @raw_port = ServerProcess.free_port
      http = ServerProcess.free_port
      super([], script: [SERVER, http.to_s, @raw_port.to_s, threads.to_s], port: http)
      deadline = Time.now + 10
      begin
        TCPSocket.new("127.0.0.1", @raw_port).close
      rescue Errno::ECONNREFUSED
        raise "the raw listener did not listen:\n#{log}" if Time.now > deadline

        sleep 0.05
        retry
      end
    end

    # Resident memory in bytes (VmRSS of /proc/PID/status; 0 once the process is gone).
    def rss
      File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)\s+kB/, 1].to_i * 1024
    rescue Errno::ENOENT, Errno::ESRCH
      0
    end

    # GET /stats?id=ID: what the handlers of connection ID saw ({} before it opened).
    def stats(id)
      JSON.parse(Net::HTTP.start("127.0.0.1", port, open_timeout: 3, read_timeout: 5) { |h| h.get("/stats?id=#{id}").body })
    end

    # How many messages the handler of `id` handled; nil when the server does not answer
    # (its workers all taken).
    def handled(id)
      stats(id)["messages"]
    rescue Net::ReadTimeout, Net::OpenTimeout, SystemCallError
      nil
    end

    # The stats of `id` once its on_close ran (or as they are after `seconds`).
    def stats_once_closed(id, seconds = 5)
      deadline = WsFrames.now + seconds
      loop do
        record = stats(id)
        return record if record["closed_at"] || WsFrames.now > deadline

        sleep 0.05
      end
    end

    # The lines the handlers logged for `id` to stderr ("event ID: LINE"), readable after exit too.
    def logged(id)
      log.lines.grep(/\Aevent #{Regexp.escape(id)}: /).map { |line| line.split(": ", 2).last.strip }
    end
  end

  # One flood_client.rb process (see its header for the request); #result waits for its JSON.
  class Flooder
    def initialize(request)
      @stdin, @stdout, @stderr, @wait = Open3.popen3(RbConfig.ruby, CLIENT)
      @out = Thread.new { @stdout.read }
      @err = Thread.new { @stderr.read }
      @stdin.write(JSON.generate(request))
      @stdin.close
    end

    def running?
      @wait.alive?
    end

    # The client's answer; it is killed if it runs past `timeout` seconds from now.
    def result(timeout = 60)
      unless @wait.join(timeout)
        kill
        raise "flood_client.rb still running after #{timeout}s: #{@err.value}"
      end
      lines = @out.value.lines
      raise "flood_client.rb answered nothing (#{@wait.value}): #{@err.value}" if lines.empty?

      JSON.parse(lines.last)
    end

    def kill
      Process.kill("KILL", @wait.pid) if @wait.alive?
      @wait.join(5)
    rescue Errno::ESRCH
      nil
    end
  end

  # While it runs: the server's RSS sampled every 20 ms (baseline: when it started) and one
  # bystander GET / (a fresh connection each) every `every` seconds, each timed.
  class Watch
    attr_reader :baseline, :latencies, :answers

    def initialize(server, every: 0.1)
      @server = server
      @baseline = server.rss
      @max = @baseline
      @latencies = []
      @answers = []
      @stop = false
      @sampler = Thread.new do
        until @stop
          @max = [@max, server.rss].max
          sleep 0.02
        end
      end
      @bystander = Thread.new do
        until @stop
          @latencies << get
          sleep every
        end
      end
    end

    # Times one GET / (a failure or a 3 s timeout counts as 3 s and is kept in #answers).
    def get
      started = @in_flight = WsFrames.now
      body = Net::HTTP.start("127.0.0.1", @server.port, open_timeout: 3, read_timeout: 3) { |h| h.get("/").body }
      @answers << body
      WsFrames.now - started
    rescue StandardError => e
      @answers << "#{e.class}: #{e.message}"
      [WsFrames.now - started, 3.0].max
    ensure
      @in_flight = nil
    end

    # Ends the sampling; a GET still unanswered 1 s later counts with the time it has waited.
    def stop
      return self if @stop

      @stop = true
      @sampler.join(5) || @sampler.kill
      unless @bystander.join(1)
        started = @in_flight
        @bystander.kill
        @bystander.join(1)
        if started
          @latencies << (WsFrames.now - started)
          @answers << "unanswered"
        end
      end
      self
    end

    def rss_growth
      @max - @baseline
    end

    def max_latency
      @latencies.max || Float::INFINITY
    end

    def summary
      format("RSS %.1f MiB -> max %.1f MiB (+%.1f MiB); %d bystander GETs, max %.3f s, median %.3f s",
             @baseline.fdiv(MIB), @max.fdiv(MIB), rss_growth.fdiv(MIB), @latencies.size, max_latency,
             @latencies.sort[@latencies.size / 2] || 0)
    end
  end

  # Starts a flood_client.rb against `server` (its HTTP port for kind "ws", its raw port for "raw").
  def flood(server, request)
    port = request[:kind].to_s == "raw" ? server.raw_port : server.port
    Flooder.new({ port: port }.merge(request))
  end

  def flood_server(threads:)
    FloodServer.new(threads: threads)
  end

  def watch(server, every: 0.1)
    Watch.new(server, every: every)
  end

  # Warms the server up (an HTTP GET, a WebSocket echo and a raw echo) so the RSS baseline
  # includes what a first connection allocates.
  def warm_up(server)
    3.times { http_get(server.port, "/") }
    WsFrames::Client.open(server.port, "/echo") do |ws|
      ws.text("echo warm")
      raise "no warm-up echo" unless ws.read_message(5) == [:text, "echo warm"]
    end
    socket = TCPSocket.new("127.0.0.1", server.raw_port)
    socket.write("echo warm-#{SecureRandom.hex(2)}\n#ECHO#")
    raise "no raw warm-up echo" unless socket.wait_readable(5) && socket.readpartial(100) == "echo\n"
  ensure
    socket&.close
  end

  # Prints a measurement line under the example (for the report).
  def measured(text)
    RSpec.configuration.reporter.message("    measured: #{text}")
  end

  def unique_id(prefix)
    "#{prefix}-#{SecureRandom.hex(4)}"
  end
end
