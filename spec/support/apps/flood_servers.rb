# frozen_string_literal: true

# Handlers for the flow-control regression specs (issue 18): clients that send faster than
# their handler runs, pings from a client that never reads, one write over the 16 MiB backlog
# limit. Run as
#
#   ruby -Ilib flood_servers.rb HTTP_PORT RAW_PORT THREADS
#
# One process (Iodine.workers = 1), THREADS Ruby worker threads.
#
# HTTP_PORT (service: :http):
#   GET /              "ok" (the bystander's request)
#   GET /stats?id=ID   JSON record of connection ID (see Records), {} while there is none
#   GET /workers       "alive/pool" worker threads
#   WebSocket upgrades (rack.upgrade = a Flood handler of that kind):
#     /slow?id=ID    on_message sleeps 20 ms per message
#     /fast?id=ID    on_message sleeps 1 ms per message
#     /echo?id=ID    on_message at once
#     /big?id=ID     on_message at once; the message "big N" is answered with ONE binary write of
#                    N MiB (byte i is i % 251), "hose" with 1 MiB binary writes until write
#                    answers nil (64 at most; then, 0.2 s later, again), both recorded in
#                    "writes" ("write N MiB: true", "hose accepted=N open?=false")
#   In every kind a text message starting with "echo" is written back as is (after the sleep).
# RAW_PORT (service: :raw): the same handlers for raw connections. The client's first line
#   names them: "slow ID\n", "fast ID\n", "echo ID\n" or "big ID\n"; what follows the line is the
#   stream. A raw stream has no messages, so the commands are found in the bytes: "#END#" (after
#   a flood of "x") is answered "got N\n", N the "x" bytes received before it; "#BIG N#" gets one
#   write of N MiB; "#HOSE#" the 1 MiB writes until nil; "#ECHO#" is answered "echo\n".
#
# Every record also goes to stderr as "event ID: LINE" for open, shutdown and close (the
# graceful-stop spec reads them from the server log once the server has exited).

require "iodine"
require "json"
require "rack"

http_port, raw_port, threads = ARGV.first(3).map { |a| Integer(a) }

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

# What happened to one connection: the callbacks in order (a run of messages is one
# "message"), how many messages and bytes on_message saw, monotonic times (the same clock as
# the spec's) of on_open, on_close and of each message of a slow handler.
module Records
  LOCK = Mutex.new
  ALL = {}

  module_function

  def create(id)
    record = { "id" => id, "events" => [], "messages" => 0, "bytes" => 0, "opened_at" => nil,
               "shutdown_at" => nil, "closed_at" => nil, "message_times" => [], "writes" => [] }
    LOCK.synchronize { ALL[id] = record } if id
    record
  end

  def update(record)
    LOCK.synchronize { yield record }
  end

  def json(id)
    LOCK.synchronize { JSON.generate(ALL.fetch(id, {})) }
  end
end

# One connection's handler; the kind says how long on_message takes.
class Flood
  SLEEP = { "slow" => 0.02, "fast" => 0.001, "echo" => 0, "big" => 0 }.freeze
  PATTERN = (0...251).map(&:chr).join.b.freeze

  # N MiB whose byte i is i % 251 (the client checks what it got).
  def self.big(mib)
    size = mib * 1024 * 1024
    (PATTERN * ((size / 251) + 1)).byteslice(0, size)
  end

  def initialize(kind, id, raw: false)
    @kind = kind
    @id = id
    @raw = raw
    @pause = SLEEP.fetch(kind)
    @record = Records.create(id)
    @tail = String.new(encoding: Encoding::BINARY)
  end

  def note(line, at: nil)
    Records.update(@record) do |r|
      r["events"] << line unless line == "message" && r["events"].last == "message"
      r[at] = now if at
    end
    $stderr.puts("event #{@id}: #{line}") unless line == "message"
  end

  def on_open(_client)
    note("open", at: "opened_at")
  end

  def on_shutdown(_client)
    note("shutdown", at: "shutdown_at")
  end

  def on_close(_client)
    note("close", at: "closed_at")
  end

  def on_message(client, data)
    started = now
    sleep(@pause) if @pause.positive?
    Records.update(@record) do |r|
      r["events"] << "message" unless r["events"].last == "message"
      r["messages"] += 1
      r["bytes"] += data.bytesize
      r["x"] = r.fetch("x", 0) + data.count("x") if @raw
      r["message_times"] << started.round(4) if @kind == "slow"
    end
    @raw ? raw_commands(client, data) : ws_commands(client, data)
  end

  def ws_commands(client, data)
    if data.encoding == Encoding::UTF_8 && data.start_with?("echo")
      client.write(data)
    elsif data.start_with?("big ")
      write_big(client, Integer(data.split.last))
    elsif data == "hose"
      hose(client)
    end
  end

  def raw_commands(client, data)
    @tail << (data.bytesize > 64 ? data.byteslice(-64..) : data)
    @tail = @tail.byteslice(-64..) if @tail.bytesize > 64
    if @tail.include?("#END#")
      @tail.clear
      client.write("got #{Records.update(@record) { |r| r['x'] }}\n")
    elsif (mib = @tail[/#BIG (\d+)#/, 1])
      @tail.clear
      write_big(client, Integer(mib))
    elsif @tail.include?("#HOSE#")
      @tail.clear
      hose(client)
    elsif @tail.include?("#ECHO#")
      @tail.clear
      client.write("echo\n")
    end
  end

  def write_big(client, mib)
    answer = client.write(Flood.big(mib))
    Records.update(@record) { |r| r["writes"] << "write #{mib} MiB: #{answer.inspect}" }
  end

  # 1 MiB writes without waiting until write answers nil (64 at most), twice.
  def hose(client)
    chunk = ("h" * (1024 * 1024)).b
    accepted = 0
    2.times do |round|
      sleep 0.2 if round == 1
      64.times do
        break unless client.write(chunk)

        accepted += 1
      end
    end
    Records.update(@record) { |r| r["writes"] << "hose accepted=#{accepted} open?=#{client.open?}" }
  end
end

# A raw connection: its first line names its kind and id, then it is a Flood.
class RawFlood
  def initialize
    @line = +""
  end

  def on_open(_client) = nil

  def on_message(client, data)
    return @flood.on_message(client, data) if @flood

    @line << data
    return unless (at = @line.index("\n"))

    kind, id = @line.byteslice(0, at).split
    rest = @line.byteslice((at + 1)..)
    @flood = Flood.new(kind, id, raw: true)
    @flood.on_open(client)
    @flood.on_message(client, rest) unless rest.empty?
  end

  def on_shutdown(client) = @flood&.on_shutdown(client)
  def on_close(client) = @flood&.on_close(client)
end

app = lambda do |env|
  query = Rack::Utils.parse_query(env["QUERY_STRING"].to_s)
  path = env["PATH_INFO"]
  case path
  when "/stats" then return [200, { "content-type" => "application/json" }, [Records.json(query["id"])]]
  when "/workers"
    return [200, { "content-type" => "text/plain" }, ["#{Iodine::Base.workers_alive}/#{Iodine::Base::Runner.pool&.size}"]]
  end
  kind = path.delete_prefix("/")
  if env["rack.upgrade?"] == :websocket && Flood::SLEEP.key?(kind)
    env["rack.upgrade"] = Flood.new(kind, query["id"])
    return [0, {}, []]
  end
  [200, { "content-type" => "text/plain" }, ["ok"]]
end

Iodine.threads = threads
Iodine.workers = 1
Iodine.listen(service: :http, port: http_port, address: "127.0.0.1", handler: app)
Iodine.listen(service: :raw, port: raw_port, address: "127.0.0.1", handler: -> { RawFlood.new })
Iodine.start
