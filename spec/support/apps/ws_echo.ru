# frozen_string_literal: true

require_relative "realtime_log"

# A WebSocket echo whose handlers log what they see (spec/integration/websocket_spec.rb, the
# crowd examples of connection_spec.rb, idle_connections_spec.rb). A connection is named by
# its `id` query parameter; GET /events?id=ID lists what happened to it:
# "call <rack.upgrade?>", "open", "message <encoding> <bytesize>", "shutdown", "close".
#   /?id=ID         the echo: each message written back as received (a text message is a
#                   UTF-8 String, so it goes back as text; a binary one as binary). Upgraded
#                   with [0, {}, []].
#   /headers?id=ID  the echo, upgraded with [200, {set-cookie: a=b, sec-websocket-protocol:
#                   the first sub-protocol the client offered}, []]
#   /raise?id=ID    the echo, but on_message raises (after logging)
#   /refused?id=ID  sets rack.upgrade, then answers 403 "refused": the handler is ignored
#   /slow?id=ID     the echo, upgraded after the app slept 0.5 s
#   /sleepy?id=ID   the echo, but a message "sleep S" is answered "before", then the callback
#                   sleeps S seconds, then "after" (a slow callback that wrote first)
#                   Any echo connection also takes: "broken" (answered with a UTF-8 String
#                   holding invalid bytes), "subscribe CH" (answered "subscribed"), and
#                   "publish-broken CH" (publishes invalid UTF-8, tagged UTF-8, on CH),
#                   "probe ..." (answered "ascii_only? valid_encoding? encoding-of-it+\xFF
#                   frozen?")
#   /count          how many echo connections are open (on_open minus on_close)
#   /workers        "alive/pool" worker threads
#   /events?id=ID   the log
# Any request with `Upgrade: websocket` gets a handler whatever its rack.upgrade? is, so a bad
# handshake still has one whose on_close must run. Other requests answer "ok".

# One echo connection.
class Echo
  OPEN_LOCK = Mutex.new
  @open = 0

  class << self
    def open_count
      OPEN_LOCK.synchronize { @open }
    end

    def add_open(delta)
      OPEN_LOCK.synchronize { @open += delta }
    end
  end

  def initialize(id, raises: false, sleepy: false)
    @id = id
    @raises = raises
    @sleepy = sleepy
    @opened = false
  end

  def on_open(_client)
    @opened = true
    Echo.add_open(1)
    RealtimeLog.add(@id, "open")
  end

  def on_message(client, data)
    RealtimeLog.add(@id, "message #{data.encoding} #{data.bytesize}")
    raise "on_message boom (#{@id})" if @raises
    Thread.current.kill if data == "kill" # a jump out of the callback, not an exception
    return nap(client, Float(data.split.last)) if @sleepy && data.start_with?("sleep ")
    return if special(client, data)

    client.write(data)
  end

  BROKEN = "bad \xC3\x28 utf-8".dup.force_encoding(Encoding::UTF_8).freeze

  def special(client, data)
    case data
    when "broken" then client.write(BROKEN)
    when /\Asubscribe (\S+)\z/
      client.subscribe(Regexp.last_match(1))
      client.write("subscribed")
    when /\Apublish-broken (\S+)\z/ then Iodine.publish(Regexp.last_match(1), BROKEN)
    when /\Aprobe / then client.write(probe(data))
    else return false
    end
    true
  end

  # What Ruby knows of a received text String without scanning it: ascii_only? and
  # valid_encoding? read the code range iodine set, and joining it to binary bytes works only
  # for an ASCII-only String.
  def probe(data)
    joined = begin
      (data + "\xFF".b).encoding.to_s
    rescue Encoding::CompatibilityError
      "incompatible"
    end
    "#{data.ascii_only?} #{data.valid_encoding?} #{joined} #{data.frozen?}"
  end

  def nap(client, seconds)
    client.write("before")
    sleep seconds
    client.write("after")
  end

  def on_shutdown(_client)
    RealtimeLog.add(@id, "shutdown")
  end

  def on_close(_client)
    Echo.add_open(-1) if @opened
    RealtimeLog.add(@id, "close")
  end
end

app = lambda do |env|
  path = env["PATH_INFO"]
  return RealtimeLog.response(env) if path == "/events"
  return RealtimeLog.workers if path == "/workers"
  return [200, { "content-type" => "text/plain" }, [Echo.open_count.to_s]] if path == "/count"

  id = RealtimeLog.params(env)["id"]
  RealtimeLog.add(id, "call #{env['rack.upgrade?'].inspect}")
  return [200, { "content-type" => "text/plain" }, ["ok"]] unless env["HTTP_UPGRADE"].to_s.casecmp?("websocket")

  env["rack.upgrade"] = Echo.new(id, raises: path == "/raise", sleepy: path == "/sleepy")
  case path
  when "/headers"
    headers = { "set-cookie" => "a=b" }
    offered = env["HTTP_SEC_WEBSOCKET_PROTOCOL"].to_s.split(",").map(&:strip).first
    headers["sec-websocket-protocol"] = offered if offered
    [200, headers, []]
  when "/refused"
    [403, { "content-type" => "text/plain" }, ["refused"]]
  when "/slow"
    sleep 0.5 # the client may leave before the upgrade is answered
    [0, {}, []]
  else
    [0, {}, []]
  end
end

run app
