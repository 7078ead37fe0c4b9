# frozen_string_literal: true

require "json"
require_relative "realtime_log"

# Connection-bound pub/sub over WebSocket (spec/integration/realtime_pubsub_spec.rb).
#   /?id=ID   a client driven by its messages "<command> <channel> [rest]"; each command is
#             answered with "<command> <channel> -> <inspected result>":
#               sub C          client.subscribe(C)                  (no block: straight to the client)
#               subsym C       client.subscribe(C.to_sym)
#               subbin C       client.subscribe(C, as: :binary)
#               subpat P       client.subscribe(P, match: :redis)
#               subblock C     client.subscribe(C) { |ch, msg| … } - the block logs "block <msg>"
#                              and writes "block <ch> <msg> <ch.encoding> <msg.encoding>"
#               unsub C        client.unsubscribe(C)
#               unsubsym C     client.unsubscribe(C.to_sym)
#               pub C MSG      client.publish(C, MSG)
#               noop C         nothing
#             on_message and the blocks count it in /stats when they overlap on one connection.
#             on_close logs "close".
#   /sub?ch=C&id=ID   subscribes to C in on_open (no block), then writes "ready"
#   /publish?ch=C&msg=M[&count=N][&form=hash]
#             Iodine.publish(C, M) (N times: M0, M1, …; form=hash: Iodine.publish(to:, message:))
#   /stats    JSON: overlaps
#   /workers        "alive/pool" worker threads
#   /events?id=ID   the log
#   anything else that is not a WebSocket request: "ok"
STATS_LOCK = Mutex.new
STATS = { "overlaps" => 0 }

# A client that runs pub/sub commands.
class PubSubClient
  def initialize(id, channel = nil)
    @id = id
    @channel = channel
    @busy = false
  end

  def on_open(client)
    return unless @channel

    client.subscribe(@channel)
    client.write("ready")
  end

  def on_close(_client) = RealtimeLog.add(@id, "close")

  def on_message(client, data)
    guarded do
      command, channel, rest = data.split(" ", 3)
      result = run(client, command, channel, rest)
      client.write("#{command} #{channel} -> #{result.inspect}")
    end
  end

  private

  def run(client, command, channel, rest)
    case command
    when "sub" then client.subscribe(channel)
    when "subsym" then client.subscribe(channel.to_sym)
    when "subbin" then client.subscribe(channel, as: :binary)
    when "subpat" then client.subscribe(channel, match: :redis)
    when "subblock" then client.subscribe(channel) { |ch, msg| delivered(client, ch, msg) }
    when "unsub" then client.unsubscribe(channel)
    when "unsubsym" then client.unsubscribe(channel.to_sym)
    when "pub" then client.publish(channel, rest.to_s)
    when "noop" then nil
    else "unknown command"
    end
  end

  def delivered(client, channel, message)
    guarded do
      RealtimeLog.add(@id, "block #{message}")
      client.write("block #{channel} #{message} #{channel.encoding} #{message.encoding}")
    end
  end

  # Counts an overlap when another callback or block of this connection is inside; sleeps a
  # little so that one has the time to happen.
  def guarded
    STATS_LOCK.synchronize do
      STATS["overlaps"] += 1 if @busy
      @busy = true
    end
    sleep 0.0002
    yield
  ensure
    @busy = false
  end
end

app = lambda do |env|
  params = RealtimeLog.params(env)
  case env["PATH_INFO"]
  when "/events" then RealtimeLog.response(env)
  when "/workers" then RealtimeLog.workers
  when "/stats" then [200, { "content-type" => "application/json" }, [STATS_LOCK.synchronize { JSON.generate(STATS) }]]
  when "/publish"
    channel = params["ch"]
    messages = params["count"] ? Array.new(params["count"].to_i) { |i| "#{params['msg']}#{i}" } : [params["msg"]]
    results = messages.map do |message|
      params["form"] == "hash" ? Iodine.publish(to: channel, message: message) : Iodine.publish(channel, message)
    end
    [200, { "content-type" => "text/plain" }, [results.uniq.inspect]]
  else
    return [200, { "content-type" => "text/plain" }, ["ok"]] unless env["rack.upgrade?"] == :websocket

    channel = params["ch"] if env["PATH_INFO"] == "/sub"
    env["rack.upgrade"] = PubSubClient.new(params["id"], channel)
    [0, {}, []]
  end
end

run app
