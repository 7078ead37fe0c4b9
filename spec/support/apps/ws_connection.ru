# frozen_string_literal: true

require "json"
require_relative "realtime_log"

# Iodine::Connection seen from WebSocket handlers (spec/integration/connection_spec.rb). A
# connection is named by its `id` query parameter; GET /events?id=ID lists what its handlers
# logged.
#   /methods?id=ID   on_open writes "x", then a JSON report of what the methods answer; on_close
#                    logs what they answer then; GET /after?id=ID reports what they answer
#                    once on_close is over (the connection object is kept for it)
#   /encodings       on_open writes "utf8 é" (UTF-8), "ascii" (US-ASCII), "bin" (ASCII-8BIT) and
#                    "caf\xE9" (ISO-8859-1), then "write answers [<the four results>]"
#   /drained?id=ID   logs "open", "drained", "message"; the message "flood" is answered with
#                    4 MiB (64 binary messages of 64 KiB)
#   /flood?id=ID     on_open writes 100 messages of 10 KB ("m0:xxx…" … "m99:xxx…"), then closes
#   /swap?id=ID      handler A; its messages: "swap" → client.handler = a new handler B (which
#                    writes "B here, handler is B" in on_open and answers "B:<msg>"), "same" →
#                    client.handler = itself (then writes "still A"), "nil"/"false" →
#                    client.handler = nil/false
#   /ordered         messages "c<client>-m<n>" must come with n = 0, 1, 2… per connection;
#                    callbacks that overlap on one connection, and messages out of order, are
#                    counted for GET /stats; echoes
#   /sleepy          on_message sleeps 0.5 s, then answers "done"
#   /firehose?id=ID  the message "go": writes 1 MiB binary messages until write answers nil
#                    (64 at most) without waiting, then logs "firehose accepted=N seconds=S"
#   /goodbye?id=ID   on_shutdown logs and writes "bye"
#   /stats           JSON: overlaps, order_errors and the worker threads /ordered ran on
#   /workers         "alive/pool" worker threads
#   anything else    "ok"
STATS_LOCK = Mutex.new
STATS = { "overlaps" => 0, "order_errors" => 0, "threads" => [] }
KEPT = {} # id => the Iodine::Connection of /methods, for /after

# /methods: what every Connection method answers while open, during and after on_close.
class Methods
  # The class name of what the block raised, "none" if nothing.
  def self.error_of
    yield
    "none"
  rescue StandardError => e
    e.class.name
  end

  def initialize(id)
    @id = id
  end

  def error_of(&block) = Methods.error_of(&block)

  def on_open(client)
    STATS_LOCK.synchronize { KEPT[@id] = client }
    report = { "write" => client.write("x"), "open?" => client.open?, "pending" => client.pending,
               "protocol" => client.protocol.inspect, "timeout" => client.timeout,
               "timeout=0" => client.public_send(:timeout=, 0), "timeout=255" => client.public_send(:timeout=, 255),
               "timeout=" => client.public_send(:timeout=, 10), "timeout then" => client.timeout,
               "timeout=256" => error_of { client.timeout = 256 }, "timeout=-1" => error_of { client.timeout = -1 },
               "timeout='5'" => error_of { client.timeout = "5" }, "timeout=1.5" => error_of { client.timeout = 1.5 },
               "env" => [client.env.class.name, client.env["PATH_INFO"], client.env["rack.upgrade?"].inspect],
               "handler" => client.handler.equal?(self), "pubsub?" => client.pubsub? }
    client.write(JSON.generate(report))
  end

  def on_close(client)
    RealtimeLog.add(@id, "close write=#{client.write('late').inspect} open?=#{client.open?} " \
                         "env=#{client.env.class} handler=#{client.handler.equal?(self)} " \
                         "protocol=#{client.protocol.inspect}")
  end

  # What the methods answer once on_close is over.
  def self.after(client)
    { "write" => client.write("later").inspect, "open?" => client.open?, "pending" => client.pending,
      "protocol" => client.protocol.inspect, "env" => client.env.inspect, "handler" => client.handler.inspect,
      "timeout" => client.timeout.inspect, "subscribe" => client.subscribe("late").inspect,
      "unsubscribe" => client.unsubscribe("late").inspect, "close" => error_of { client.close } }
  end
end

# /encodings: which frame each String encoding makes.
module Encodings
  extend self

  def on_open(client)
    results = ["utf8 é", "ascii".encode(Encoding::US_ASCII), "bin".b,
               "caf\xE9".dup.force_encoding(Encoding::ISO_8859_1)].map { |string| client.write(string) }
    client.write("write answers #{results.inspect}")
  end
end

# /drained: when on_drained comes.
class Drained
  CHUNK = ("d" * 65_536).b.freeze

  def initialize(id)
    @id = id
  end

  def on_open(_client) = RealtimeLog.add(@id, "open")
  def on_drained(_client) = RealtimeLog.add(@id, "drained")
  def on_close(_client) = RealtimeLog.add(@id, "close")

  def on_message(client, data)
    RealtimeLog.add(@id, "message")
    64.times { client.write(CHUNK) } if data == "flood"
  end
end

# /flood: 100 queued messages, then close.
class Flood
  def initialize(id)
    @id = id
  end

  def on_open(client)
    100.times { |i| client.write("m#{i}:#{'x' * 10_000}") }
    client.close
    RealtimeLog.add(@id, "wrote 100 then closed")
  end

  def on_close(_client) = RealtimeLog.add(@id, "close")
end

# /swap: handler A, which hands over to B.
class SwapA
  def initialize(id)
    @id = id
  end

  def on_open(_client) = RealtimeLog.add(@id, "A open")
  def on_close(_client) = RealtimeLog.add(@id, "A close")

  def on_message(client, data)
    RealtimeLog.add(@id, "A message #{data}")
    case data
    when "swap" then client.handler = SwapB.new(@id)
    when "same"
      client.handler = self
      client.write("still A")
    when "nil" then client.handler = nil
    when "false" then client.handler = false
    end
  end
end

# /swap: handler B.
class SwapB
  def initialize(id)
    @id = id
  end

  def on_open(client)
    RealtimeLog.add(@id, "B open")
    client.write("B here, handler is #{client.handler.class}")
  end

  def on_message(client, data)
    RealtimeLog.add(@id, "B message #{data}")
    client.write("B:#{data}")
  end

  def on_close(_client) = RealtimeLog.add(@id, "B close")
end

# /ordered: one connection's callbacks must never overlap, its messages come in order.
class Ordered
  def initialize
    @busy = false
    @next = 0
  end

  def on_open(_client) = guarded { nil }
  def on_close(_client) = guarded { nil }

  def on_message(client, data)
    guarded do
      STATS_LOCK.synchronize { STATS["order_errors"] += 1 } unless data[/\d+\z/].to_i == @next
      @next += 1
      client.write(data)
    end
  end

  private

  # Runs the block, counting an overlap if another callback of this connection is inside;
  # sleeps a little so that an overlap has the time to happen (and the GVL is released).
  def guarded
    STATS_LOCK.synchronize do
      STATS["overlaps"] += 1 if @busy
      STATS["threads"] |= [Thread.current.name.to_s]
      @busy = true
    end
    sleep 0.0002
    yield
  ensure
    @busy = false
  end
end

# /sleepy: a slow on_message.
module Sleepy
  extend self

  def on_message(client, _data)
    sleep 0.5
    client.write("done")
  end
end

# /firehose: a client that reads nothing, written to without waiting.
class Firehose
  CHUNK = ("f" * (1 << 20)).b.freeze

  def initialize(id)
    @id = id
  end

  def on_message(client, data)
    return unless data == "go"

    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    accepted = 0
    accepted += 1 while accepted < 64 && client.write(CHUNK)
    seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    RealtimeLog.add(@id, "firehose accepted=#{accepted} seconds=#{seconds.round(3)}")
  end

  def on_close(_client) = RealtimeLog.add(@id, "close")
end

# /goodbye: says bye when the server shuts down.
class Goodbye
  def initialize(id)
    @id = id
  end

  def on_open(_client) = RealtimeLog.add(@id, "open")
  def on_close(_client) = RealtimeLog.add(@id, "close")

  def on_shutdown(client)
    RealtimeLog.add(@id, "shutdown")
    client.write("bye")
  end
end

HANDLERS = {
  "/methods" => ->(id) { Methods.new(id) }, "/encodings" => ->(_) { Encodings }, "/drained" => ->(id) { Drained.new(id) },
  "/flood" => ->(id) { Flood.new(id) }, "/swap" => ->(id) { SwapA.new(id) },
  "/ordered" => ->(_) { Ordered.new }, "/sleepy" => ->(_) { Sleepy },
  "/firehose" => ->(id) { Firehose.new(id) }, "/goodbye" => ->(id) { Goodbye.new(id) }
}.freeze

app = lambda do |env|
  path = env["PATH_INFO"]
  id = RealtimeLog.params(env)["id"]
  case path
  when "/events" then RealtimeLog.response(env)
  when "/workers" then RealtimeLog.workers
  when "/stats" then [200, { "content-type" => "application/json" }, [STATS_LOCK.synchronize { JSON.generate(STATS) }]]
  when "/after"
    client = STATS_LOCK.synchronize { KEPT[id] }
    [200, { "content-type" => "application/json" }, [JSON.generate(Methods.after(client))]]
  else
    factory = HANDLERS[path]
    return [200, { "content-type" => "text/plain" }, ["ok"]] unless factory && env["rack.upgrade?"] == :websocket

    env["rack.upgrade"] = factory.call(id)
    [0, {}, []]
  end
end

run app
