# frozen_string_literal: true

# The app bench/ws.rb serves with iodine (the rack.upgrade API of the 0.7 gem): /echo echoes
# each message; /sub (WebSocket) and /sse (SSE) subscribe to the "bench" channel and are sent
# "ready"; each message sent to /pub is published on "bench". bench/faye_app.ru is the same
# app for puma + faye-websocket.
#
#   ruby -Ilib exe/iodine -p 3000 -t 1 bench/ws_app.ru

# /echo: sends each message back (a text message stays text).
module Echo
  def self.on_message(client, data)
    client.write(data)
  end
end

# /sub and /sse: a subscription without a block, so messages go from Rust straight to the
# socket; "ready" tells the load tool the subscription is in place.
module Subscriber
  def self.on_open(client)
    client.subscribe("bench")
    client.write("ready")
  end
end

# /pub: publishes each message to every subscriber.
module Publisher
  def self.on_message(_client, data)
    Iodine.publish("bench", data)
  end
end

OK = [200, { "content-type" => "text/plain" }.freeze, ["ok"].freeze].freeze

run(lambda do |env|
  handler =
    case [env["PATH_INFO"], env["rack.upgrade?"]]
    when ["/echo", :websocket] then Echo
    when ["/sub", :websocket], ["/sse", :sse] then Subscriber
    when ["/pub", :websocket] then Publisher
    end
  next OK unless handler

  env["rack.upgrade"] = handler
  [0, {}, []]
end)
