# frozen_string_literal: true

# The baseline of bench/ws.rb: the app of bench/ws_app.ru written for puma + faye-websocket.
# /echo echoes each message; /sub (WebSocket) and /sse (EventSource) join one subscriber list
# and are sent "ready"; each message sent to /pub goes to every subscriber.
#
#   puma -t 4:4 -b tcp://127.0.0.1:3000 bench/faye_app.ru
#
# faye-websocket 0.11 needs no adapter for puma: it takes the socket with rack.hijack and runs
# it on its EventMachine reactor thread, where all the callbacks below run.

require "faye/websocket"

# epoll instead of select(), which stops at 1,024 descriptors (the idle case holds 10,000).
EventMachine.epoll

# Subscribers (Faye::WebSocket and Faye::EventSource both answer send(String)), as Hash keys
# so leaving is O(1). Callbacks run on the reactor thread, but the app itself runs on puma's.
SUBSCRIBERS = {}.compare_by_identity
SUBSCRIBERS_LOCK = Mutex.new

# Adds `socket` to the list once it is open, confirms with "ready", and removes it on close.
def subscribe(socket)
  socket.on(:open) do
    SUBSCRIBERS_LOCK.synchronize { SUBSCRIBERS[socket] = true }
    socket.send(+"ready") # unfrozen: EventSource#send calls force_encoding on it
  end
  socket.on(:close) { SUBSCRIBERS_LOCK.synchronize { SUBSCRIBERS.delete(socket) } }
end

# Sends `message` to every subscriber.
def broadcast(message)
  SUBSCRIBERS_LOCK.synchronize { SUBSCRIBERS.each_key { |socket| socket.send(message) } }
end

run(lambda do |env|
  if Faye::WebSocket.websocket?(env)
    ws = Faye::WebSocket.new(env)
    case env["PATH_INFO"]
    when "/echo" then ws.on(:message) { |event| ws.send(event.data) }
    when "/sub" then subscribe(ws)
    when "/pub" then ws.on(:message) { |event| broadcast(event.data) }
    end
    ws.rack_response
  elsif Faye::EventSource.eventsource?(env) && env["PATH_INFO"] == "/sse"
    es = Faye::EventSource.new(env)
    subscribe(es)
    es.rack_response
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end)
