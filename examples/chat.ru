# frozen_string_literal: true

# A chat room over WebSocket and EventSource, on iodine's native pub/sub.
#
#   iodine examples/chat.ru      then open http://localhost:3000 in two browser tabs
#
# Browsers talk over a WebSocket (/ws?nick=NAME) and listen on an EventSource (/sse): the
# WebSocket handler publishes what it hears to the "chat" channel, and both kinds of
# connection subscribe to it without a block, so each message goes to every socket from
# Rust without entering Ruby. `/?auto=1` sends one message once both are connected (the
# spec drives it with headless Chromium).

require "cgi"

PAGE = <<~HTML
  <!DOCTYPE html>
  <html><head><meta charset="utf-8"><title>iodine chat</title></head>
  <body>
    <h1>iodine chat</h1>
    <form id="say"><input id="text" autocomplete="off" placeholder="say something"><button>Send</button></form>
    <ul id="log"></ul>
    <script>
      const nick = new URLSearchParams(location.search).get("nick") || "guest";
      const auto = new URLSearchParams(location.search).get("auto");
      let heard = 0;
      const log = (line) => {
        const li = document.createElement("li");
        li.textContent = line;
        document.getElementById("log").appendChild(li);
        // In auto mode the page is done once its message came back both ways.
        if (auto && line.endsWith(": hello from " + nick) && ++heard === 2) { ws.close(); es.close(); }
      };
      let open = 0;
      const ready = () => { if (++open === 2 && auto) ws.send("hello from " + nick); };
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${location.host}/ws?nick=${encodeURIComponent(nick)}`);
      ws.onopen = ready;
      ws.onmessage = (e) => log("ws: " + e.data);
      const es = new EventSource("/sse");
      es.onopen = ready;
      es.onmessage = (e) => log("sse: " + e.data);
      document.getElementById("say").onsubmit = (e) => {
        e.preventDefault();
        const input = document.getElementById("text");
        ws.send(input.value);
        input.value = "";
      };
    </script>
  </body></html>
HTML

# One WebSocket client: what it says goes to the room, and the room comes back to it.
class Chatter
  def initialize(nick)
    @nick = nick
  end

  def on_open(client)
    client.subscribe(:chat)
    client.publish(:chat, "#{@nick} joined")
  end

  def on_message(client, data)
    client.publish(:chat, "#{@nick}: #{data}")
  end

  def on_close(_client)
    Iodine.publish(:chat, "#{@nick} left")
  end
end

# One EventSource: it only listens.
module Listener
  def self.on_open(client)
    client.subscribe(:chat)
  end
end

run(lambda do |env|
  case env["rack.upgrade?"]
  when :websocket
    nick = CGI.parse(env["QUERY_STRING"].to_s)["nick"].first.to_s[0, 32]
    env["rack.upgrade"] = Chatter.new(nick.empty? ? "guest" : nick)
    [0, {}, []]
  when :sse
    env["rack.upgrade"] = Listener
    [0, {}, []]
  else
    [200, { "content-type" => "text/html; charset=utf-8" }, [PAGE]]
  end
end)
