# frozen_string_literal: true

# A Ruby pub/sub engine that records its hooks, and WebSocket clients that subscribe to the
# channel their path names (/ws/CHANNEL, `?pattern=1` for a pattern).
class RecordingEngine < Iodine::PubSub::Engine
  attr_reader :log

  def initialize
    super
    @log = []
    @lock = Mutex.new
  end

  def subscribe(channel, match = nil) = @lock.synchronize { @log << "subscribe #{channel}#{match ? ' pattern' : ''}" }
  def unsubscribe(channel, match = nil) = @lock.synchronize { @log << "unsubscribe #{channel}#{match ? ' pattern' : ''}" }
  def lines = @lock.synchronize { @log.dup }
end

ENGINE = RecordingEngine.new
Iodine::PubSub.attach(ENGINE)

# Subscribes on open to the channel its path names.
class Subscriber
  def initialize(channel, pattern)
    @channel = channel
    @pattern = pattern
  end

  def on_open(client)
    @pattern ? client.subscribe(@channel, match: :redis) : client.subscribe(@channel)
    client.write("subscribed")
  end

  def on_message(client, data)
    client.unsubscribe(@channel) if data == "unsubscribe"
    client.write("done #{data}")
  end
end

run(lambda do |env|
  path = env["PATH_INFO"]
  if env["rack.upgrade?"] == :websocket && path.start_with?("/ws/")
    env["rack.upgrade"] = Subscriber.new(path.delete_prefix("/ws/"), env["QUERY_STRING"].include?("pattern=1"))
    return [0, {}, []]
  end
  case path
  when "/log" then [200, {}, [ENGINE.lines.join("\n")]]
  when "/sub" then Iodine.subscribe(env["QUERY_STRING"]) { nil } && [200, {}, ["ok"]]
  when "/unsub" then [200, {}, [Iodine.unsubscribe(env["QUERY_STRING"]).to_s]]
  when "/reset"
    before = ENGINE.lines.size
    Iodine::PubSub.reset(ENGINE)
    [200, {}, [ENGINE.lines[before..].sort.join("\n")]]
  else [200, {}, ["ok"]]
  end
end)
