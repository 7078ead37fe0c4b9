# frozen_string_literal: true

# HTTP/2 (spec/integration/http2_spec.rb). Every route answers over HTTP/1.1 too.
#   /info             the env's protocol keys, one "KEY=value" per line
#   /echo             the request body back, with x-size and x-input-class headers
#   /stream           three chunks from `each`, 0.4 s apart
#   /huge?mib=N       N MiB streamed in 64 KiB chunks (default 200)
#   /big              a 4 MiB body in memory
#   /slow?s=S         "slow" after sleeping S seconds (default 1)
#   /count            how many requests reached the app (all routes)
#   /raise            raises
#   /stats            Iodine.stats as JSON
#   /publish          subscribes (once) to "stats-channel" with a block, publishes "hi" there
#   /sendfile         an X-Sendfile answer for ENV["H2_FILE"]
#   /sse              an event stream writing "hi" (its on_close is logged "sse closed")
#   /ws               a WebSocket echo (its on_close is logged "ws closed")
require "json"
require "stringio"

COUNT = Queue.new

# A WebSocket echo.
class H2Echo
  def on_open(client) = client.write("open #{client.protocol}")
  def on_message(client, data) = client.write(data)
  def on_close(_client) = warn("ws closed")
end

# An event stream that says hi.
class H2Events
  def on_open(client) = client.write("hi")
  def on_close(_client) = warn("sse closed")
end

# A body produced slowly.
class Chunks
  def each
    3.times do |i|
      sleep 0.4 if i.positive?
      yield "chunk#{i}\n"
    end
  end
end

# Many MiB, produced on demand.
class Huge
  PIECE = ("x" * 65_536).freeze

  def initialize(mib) = @pieces = mib * 16
  def each = @pieces.times { yield PIECE }
end

KEYS = %w[SERVER_PROTOCOL HTTP_VERSION HTTP_HOST SERVER_NAME SERVER_PORT REQUEST_METHOD PATH_INFO
          QUERY_STRING rack.url_scheme rack.hijack? HTTP_X_CUSTOM].freeze

run(lambda do |env|
  COUNT << 1
  case env["PATH_INFO"]
  when "/info"
    lines = KEYS.map { |k| "#{k}=#{env[k]}" }
    lines << "hijack_key=#{env.key?('rack.hijack')}"
    [200, { "content-type" => "text/plain" }, [lines.join("\n")]]
  when "/echo"
    body = env["rack.input"].read
    [200, { "x-size" => body.bytesize.to_s, "x-input-class" => env["rack.input"].class.name }, [body]]
  when "/stream" then [200, {}, Chunks.new]
  when "/huge"
    mib = (env["QUERY_STRING"][/mib=(\d+)/, 1] || 200).to_i
    [200, {}, Huge.new(mib)]
  when "/big" then [200, {}, ["b" * (4 << 20)]]
  when "/slow"
    sleep((env["QUERY_STRING"][/s=([\d.]+)/, 1] || 1).to_f)
    [200, {}, ["slow"]]
  when "/count" then [200, {}, [COUNT.size.to_s]]
  when "/raise" then raise "boom over h2"
  when "/stats" then [200, { "content-type" => "application/json" }, [JSON.generate(Iodine.stats)]]
  when "/publish"
    Iodine.subscribe("stats-channel") { |_ch, _msg| nil } unless defined?(@subscribed) && @subscribed
    @subscribed = true
    Iodine.publish("stats-channel", "hi")
    [200, {}, ["published"]]
  when "/sendfile" then [200, { "x-sendfile" => ENV.fetch("H2_FILE") }, []]
  when "/sse"
    env["rack.upgrade"] = H2Events.new if env["rack.upgrade?"] == :sse
    [200, {}, ["not sse"]]
  when "/ws"
    env["rack.upgrade"] = H2Echo.new if env["rack.upgrade?"] == :websocket
    [200, {}, ["not ws"]]
  else [404, {}, ["not found"]]
  end
end)
