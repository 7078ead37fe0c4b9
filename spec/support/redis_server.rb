# frozen_string_literal: true

require "fileutils"
require "open3"
require "tmpdir"
require_relative "process_tree"
require_relative "realtime"

# A redis-server of the specs' own (Debian's /usr/bin/redis-server): 127.0.0.1 on a free port,
# no persistence (--save '' --appendonly no, its files in a temporary directory), optionally
# with --requirepass. It can be stopped and started again on the same port, paused (SIGSTOP)
# and resumed (SIGCONT); redis-cli speaks to it. Every wait is bounded; every instance is
# stopped at exit at the latest.
class RedisServer
  BINARY = ENV.fetch("REDIS_SERVER", "/usr/bin/redis-server")
  CLI = ENV.fetch("REDIS_CLI", File.join(File.dirname(BINARY), "redis-cli"))
  BOOT_TIMEOUT = 10
  ALL = []

  at_exit { ALL.dup.each(&:close) }

  # Why the Redis specs cannot run here (nil when they can): the `skip:` of their describe.
  def self.skip_reason
    return nil if File.executable?(BINARY) && File.executable?(CLI)

    "needs #{BINARY} and #{CLI} (Debian: sudo apt-get install -y redis-server)"
  end

  attr_reader :port, :password, :pid

  # `start: false` picks the port but leaves it unserved until #start.
  def initialize(port: ServerProcess.free_port, password: nil, start: true)
    @port = port
    @password = password
    @dir = Dir.mktmpdir("iodine-spec-redis-")
    @log_path = File.join(@dir, "redis.log")
    ALL << self
    self.start if start
  end

  # redis://[user:password@]127.0.0.1:PORT ("redis://:password@…" without a user).
  def url(user: nil, password: @password)
    auth = password ? "#{user}:#{password}@" : ""
    "redis://#{auth}127.0.0.1:#{@port}"
  end

  # Starts redis-server on the port and waits until it answers PING.
  def start
    raise "redis-server #{@pid} is still running on #{@port}" if running?

    command = [BINARY, "--port", @port.to_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", @dir, "--daemonize", "no", "--logfile", ""]
    command.push("--requirepass", @password) if @password
    @status = nil
    @pid = Process.spawn(*command, in: File::NULL, out: [@log_path, "a"], err: %i[child out])
    deadline = RedisServer.now + BOOT_TIMEOUT
    until cli("PING") == "PONG"
      raise "redis-server exited at start:\n#{log}" unless running?
      raise "redis-server did not answer PING on #{@port} in #{BOOT_TIMEOUT}s:\n#{log}" if RedisServer.now > deadline

      sleep 0.05
    end
    self
  end

  # Stops it (resumed first if paused): TERM, then KILL after 5 s.
  def stop
    return unless running?

    signal("CONT")
    signal("TERM")
    signal("KILL") unless wait_exit(5)
    wait_exit(5)
  end

  # Stops it for good and removes its directory.
  def close
    stop
    FileUtils.rm_rf(@dir)
    ALL.delete(self)
  end

  def pause = signal("STOP")
  def resume = signal("CONT")

  def running?
    return false unless @pid && @status.nil?

    _, @status = Process.waitpid2(@pid, Process::WNOHANG)
    @status.nil?
  end

  def log
    File.exist?(@log_path) ? File.read(@log_path) : ""
  end

  # Runs redis-cli against this server (authenticated when it has a password) with `args`, or
  # the lines of `input` on its stdin (one connection for all); its output (stdout and
  # stderr), the last newline removed. Killed after `timeout` seconds (a paused server).
  def cli(*args, input: nil, timeout: 5)
    command = [CLI, "-h", "127.0.0.1", "-p", @port.to_s]
    command.push("-a", @password, "--no-auth-warning") if @password
    Open3.popen2e(*command, *args.map(&:to_s)) do |stdin, out, waiter|
      reader = Thread.new { out.read }
      begin
        stdin.write(input) if input
        stdin.close
      rescue Errno::EPIPE
        nil
      end
      unless waiter.join(timeout)
        Process.kill("KILL", waiter.pid)
        waiter.join
      end
      reader.value.to_s.b.chomp
    end
  end

  # The connections CLIENT LIST shows, but the redis-cli asking: [{"id" => "7", "sub" => "1", …}, …].
  def clients
    own, *lines = cli(input: "CLIENT ID\nCLIENT LIST\n").lines(chomp: true)
    lines.map { |line| line.split(" ").to_h { |field| field.split("=", 2) } }
         .reject { |client| client["id"] == own || client["id"].nil? }
  end

  def client_count = clients.size

  # How many connections are SUBSCRIBEd to `channel` (PUBSUB NUMSUB).
  def numsub(channel)
    cli("PUBSUB", "NUMSUB", channel).lines.last.to_i
  end

  # How many pattern subscriptions the connections have in all (the psub= of CLIENT LIST).
  def psub_count
    clients.sum { |client| client["psub"].to_i }
  end

  def self.now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  private

  def signal(name)
    Process.kill(name, @pid) if running?
  rescue Errno::ESRCH
    nil
  end

  def wait_exit(seconds)
    deadline = RedisServer.now + seconds
    while running?
      return false if RedisServer.now > deadline

      sleep 0.02
    end
    true
  end
end

# For the specs of Iodine::PubSub::Redis: iodine servers running spec/support/apps/redis_app.ru
# with `-r URL`, WebSocket and SSE subscribers of its channels, and "exactly once" checks.
# Every iodine server, Redis server and subscriber made through these helpers is stopped by
# #stop_everything (call it in an `after` hook).
module RedisHelpers
  include ProcessTree

  # Probe messages (see #warm_up) start with this; #expect_exactly ignores them.
  PROBE = "probe-"

  # An error reply of /cmd (the object the block got): its class name, message, is_a?(StandardError).
  CmdError = Struct.new(:class_name, :message, :standard_error)

  # What both kinds of subscriber share: the app's greeting "ready:PID" names their process.
  module Greeted
    attr_reader :pid, :label

    private

    def greeted(port, path, kind)
      greeting = next_message(10).to_s
      raise "no ready:PID greeting on #{path} (got #{greeting.inspect})" unless greeting =~ /\Aready:(\d+)\z/

      @pid = Regexp.last_match(1).to_i
      @label = "#{kind} on pid #{@pid} (port #{port})"
    end
  end

  # A WebSocket subscriber of redis_app.ru's /ws (its greeting "ready:PID" read).
  class WsSubscriber
    include Greeted

    def initialize(port, path)
      @ws = WsFrames::Client.new(port, path)
      raise "the upgrade of #{path} on #{port} failed: #{@ws.head}" unless @ws.upgraded?

      greeted(port, path, "WebSocket")
    end

    # The next message (binary for binary frames), nil on timeout, Close or EOF.
    def next_message(timeout)
      kind, data = @ws.read_message(timeout)
      %i[text binary].include?(kind) ? data : nil
    end

    def close = @ws.close_socket
  end

  # An SSE subscriber of redis_app.ru's /sse (its greeting "ready:PID" read).
  class SseSubscriber
    include Greeted

    def initialize(port, path)
      @socket = TCPSocket.new("127.0.0.1", port)
      @socket.write("GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
      @buffer = +"".b
      deadline = RedisServer.now + 10
      until (at = @buffer.index("\r\n\r\n"))
        break unless fill(deadline)
      end
      head = at ? @buffer.slice!(0, at + 4) : @buffer
      raise "no SSE stream on #{path}: #{head.inspect}" unless head.start_with?("HTTP/1.1 200") && head =~ /event-stream/i

      greeted(port, path, "SSE")
    end

    # The data of the next event (its data lines joined by "\n"), nil on timeout or EOF.
    def next_message(timeout)
      deadline = RedisServer.now + timeout
      loop do
        while (at = @buffer.index(/\r?\n\r?\n/n))
          event = @buffer.slice!(0, at)
          @buffer.sub!(/\A\r?\n\r?\n/n, "")
          data = event.split(/\r?\n/n).filter_map { |line| line[/\Adata: ?(.*)\z/mn, 1] }
          next if data.empty?

          text = data.join("\n").force_encoding(Encoding::UTF_8)
          return text.valid_encoding? ? text : text.b
        end
        return nil unless fill(deadline)
      end
    end

    def close = @socket.close

    private

    def fill(deadline)
      left = deadline - RedisServer.now
      return false if left <= 0 || !IO.select([@socket], nil, nil, left)

      @buffer << @socket.read_nonblock(65_536)
      true
    rescue IO::WaitReadable
      true
    rescue EOFError, IOError, SystemCallError
      false
    end
  end

  def start_redis(**options)
    (@redis_servers ||= []) << RedisServer.new(**options)
    @redis_servers.last
  end

  # `exe/iodine -w WORKERS -t 4 [-r URL] [-rp PING] redis_app.ru` (4 threads: /cmd waits on one).
  def start_iodine(url, workers: 1, ping: nil, env: {}, args: [])
    redis = url ? ["-r", url] : []
    redis.push("-rp", ping.to_s) if ping
    server = ServerProcess.new(["-w", workers.to_s, "-t", "4", *redis, *args, app_path("redis_app.ru")], env: env)
    (@iodine_servers ||= []) << server
    server
  end

  # Closes the subscribers, stops the iodine servers (and KILLs any process of theirs left),
  # then the Redis servers.
  def stop_everything
    (@subscribers || []).each(&:close)
    (@iodine_servers || []).each do |server|
      family = server.exited? ? [] : children(server.pid)
      server.stop
      wait_until(5) { family.none? { |pid| alive?(pid) } }
      kill_all(family)
    end
    (@redis_servers || []).each(&:close)
    @subscribers = @iodine_servers = @redis_servers = nil
  end

  # A query string with every byte but the unreserved ones as %XX (binary values pass whole).
  def query(params)
    params.map { |key, value| "#{key}=#{value.to_s.b.gsub(/[^A-Za-z0-9\-._~]/n) { |c| format('%%%02X', c.ord) }}" }
          .join("&")
  end

  # GET `path?params` on a fresh connection; the response (an error unless 200).
  def get!(server, path, **params)
    response = http_get(server.port, params.empty? ? path : "#{path}?#{query(params)}")
    raise "GET #{path} answered #{response.code}: #{response.body}" unless response.code == "200"

    response
  end

  # Publishes through the app (via: default → Iodine.publish(ch, msg), engine → with the Redis
  # engine as 3rd argument, method → engine.publish, cluster → CLUSTER); the publishing pid.
  def publish(server, channel, message, via: "default")
    get!(server, "/publish", ch: channel, msg: message, via: via).body.to_i
  end

  # The pids of the server's `count` processes that answer HTTP (fresh connections, ≤ 20 s).
  def serving_pids(server, count)
    seen = Set.new
    deadline = now + 20
    seen << get!(server, "/pid").body.to_i until seen.size >= count || now > deadline
    seen
  end

  # Subscribers of each kind (:ws, :sse) on `path_query` until they sit on `workers`
  # different processes of the server (at most 40 of a kind); all of them.
  def subscribe_everywhere(server, channel, workers:, kinds: %i[ws sse], **options)
    kinds.flat_map do |kind|
      made = []
      until made.map(&:pid).uniq.size >= workers
        raise "40 #{kind} subscribers all landed on #{made.map(&:pid).uniq}" if made.size >= 40

        made << subscribe(server, channel, kind: kind, **options)
      end
      made
    end
  end

  # One subscriber of `channel` (pattern: match: :redis; binary: as: :binary, WebSocket only).
  def subscribe(server, channel, kind: :ws, pattern: false, binary: false)
    params = { ch: channel }
    params[:pattern] = 1 if pattern
    params[:binary] = 1 if binary
    kind_class = kind == :ws ? WsSubscriber : SseSubscriber
    (@subscribers ||= []) << kind_class.new(server.port, "/#{kind}?#{query(params)}")
    @subscribers.last
  end

  # Subscribers of `channel` on every process of two servers (`a` with 2 workers, `b` with
  # one), once both servers subscribed in Redis and a probe through `via` reached them all.
  def subscribed_on_both(redis, a, b, channel, via: a)
    subscribers = subscribe_everywhere(a, channel, workers: 2) + subscribe_everywhere(b, channel, workers: 1)
    expect(await_numsub(redis, channel, 2)).to eq(2)
    warm_up(subscribers, via, channel)
    subscribers
  end

  # Polls PUBSUB NUMSUB until it is `count` (≤ `seconds`); the last count seen.
  def await_numsub(redis, channel, count, seconds: 15)
    seen = nil
    wait_until(seconds) { (seen = redis.numsub(channel)) == count }
    seen
  end

  # Publishes probes (PROBE + n) to `channel` through `server` until each subscriber got one:
  # the whole path (Redis, the master, every worker's routing) is in place. Raises after `seconds`.
  def warm_up(subscribers, server, channel, seconds: 15)
    cold = subscribers.dup
    deadline = now + seconds
    sent = 0
    until cold.empty?
      raise "no probe reached #{cold.map(&:label).join(', ')} in #{seconds}s (#{sent} sent)" if now > deadline

      publish(server, channel, "#{PROBE}#{sent += 1}")
      cold.reject! do |subscriber|
        message = subscriber.next_message(0.2)
        raise "#{subscriber.label} got #{message.inspect} while warming up" if message && !message.start_with?(PROBE)

        message
      end
    end
  end

  # Publishes "PREFIX-0", "PREFIX-1", … through `server` (fresh connections) until each of
  # its `workers` processes published one (at most 40); the messages.
  def publish_from_every_worker(server, channel, prefix, workers: 1, via: "default")
    by = Set.new
    sent = []
    until by.size >= workers
      raise "40 publishes all went to #{by.to_a}" if sent.size >= 40

      by << publish(server, channel, "#{prefix}-#{sent.size}", via: via)
      sent << "#{prefix}-#{sent.size}"
    end
    sent
  end

  # What each subscriber receives but probes: read until it has `expected.size` messages (all
  # within `seconds`), then whatever else comes in `quiet` seconds (a duplicate would).
  def received(subscribers, count, seconds: 10, quiet: 0.5)
    deadline = now + seconds
    got = subscribers.to_h do |subscriber|
      messages = []
      while messages.size < count && (message = subscriber.next_message([deadline - now, 0.05].max))
        messages << message unless message.start_with?(PROBE)
      end
      [subscriber, messages]
    end
    sleep quiet
    got.each do |subscriber, messages|
      while (message = subscriber.next_message(0.05))
        messages << message unless message.start_with?(PROBE)
      end
    end
    got
  end

  # Each subscriber received every message of `expected` exactly once (none lost, none twice,
  # nothing else); `sorted: false` also asks for their order.
  def expect_exactly(subscribers, expected, sorted: true, **options)
    received(subscribers, expected.size, **options).each do |subscriber, got|
      missing = expected - got
      extra = got.tally.filter_map { |m, n| [m, n] if n > 1 || !expected.include?(m) }
      expect(sorted ? got.sort : got).to eq(sorted ? expected.sort : expected),
                                         "#{subscriber.label}: missing #{missing.inspect}, " \
                                         "duplicated or unexpected #{extra.inspect} (got #{got.size} of #{expected.size})"
    end
  end

  # The app's /stats: the engine's stats ("connected", "reconnects", "messages_in", …) and "pid".
  def stats(server) = JSON.parse(get!(server, "/stats").body)

  # Reads (and drops) what the subscribers still get in `quiet` seconds: late probes.
  def settle(subscribers, quiet: 0.5) = received(subscribers, 0, quiet: quiet)

  # Lines of the server's log that mention Redis.
  def redis_log_lines(server)
    server.log.lines.grep(/redis/i)
  end

  # The last `bytes` of a server's log, for failure messages.
  def log_tail(server, bytes = 3000)
    text = server.log
    "--- log of iodine on #{server.port}:\n#{text.bytesize > bytes ? text.byteslice(-bytes..) : text}"
  end

  # The app's /cmd: runs redis.cmd(*args) in a worker, waits `wait` s for the block. Symbols,
  # binary (not UTF-8) Strings and other objects travel tagged. Returns [reply, answer]: the
  # reply as a Ruby value (an error reply: a CmdError), the JSON answer (pid, block_pid,
  # returned_engine, raised, timeout).
  def cmd(server, *args, wait: 5, id: nil, read_timeout: 10)
    path = "/cmd?#{query(args: JSON.generate(args.map { |arg| tag_arg(arg) }), wait: wait, id: id.to_s)}"
    response = Net::HTTP.start("127.0.0.1", server.port, open_timeout: 5, read_timeout: read_timeout) do |http|
      http.request(Net::HTTP::Get.new(path))
    end
    raise "/cmd answered #{response.code}: #{response.body}" unless response.code == "200"

    answer = JSON.parse(response.body)
    [answer["reply"] && untag_reply(answer["reply"]), answer]
  end

  # cmd(server, *args) on fresh connections until each of the `workers` processes ran it (at
  # most 40 tries): {pid => reply} ({pid => [reply, answer]} with `answers: true`).
  def cmd_on_every_worker(server, workers, *args, answers: false)
    seen = {}
    40.times do
      break if seen.size >= workers

      reply, answer = cmd(server, *args)
      seen[answer["pid"]] = answers ? [reply, answer] : reply
    end
    raise "the /cmd answers all came from #{seen.keys}" if seen.size < workers

    seen
  end

  def tag_arg(arg)
    case arg
    when Symbol then { "sym" => arg.to_s }
    when String then arg.dup.force_encoding(Encoding::UTF_8).valid_encoding? ? arg : { "hex" => arg.unpack1("H*") }
    when nil, true, false, Numeric then arg
    when Array then { "array" => arg }
    when Hash then { "hash" => arg }
    else { "object" => arg.class.name }
    end
  end

  def untag_reply(reply)
    case reply["type"]
    when "String" then [reply["hex"]].pack("H*").force_encoding(reply["encoding"])
    when "Integer", "Float", "Boolean" then reply["value"]
    when "nil" then nil
    when "Array" then reply["items"].map { |item| untag_reply(item) }
    else CmdError.new(reply["type"], reply["message"], reply["standard_error"])
    end
  end
end
