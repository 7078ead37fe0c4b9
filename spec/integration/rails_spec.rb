# frozen_string_literal: true

require "spec_helper"
require_relative "../support/framework_apps"
require_relative "../support/chromium"
require_relative "../support/ws_frames"
require_relative "../support/redis_server"

# A real Rails 6.1 app (spec/support/apps/rails/: production mode, no database, Action Cable
# on /cable with the async adapter) served by `exe/iodine`, spoken to with Net::HTTP, raw
# sockets, curl and an Action Cable client in Python (spec/support/action_cable_client.py).
# Every example also checks that the server (and Rails) logged no error it did not expect.
RSpec.describe "A Rails 6.1 app on iodine" do
  include FrameworkApps

  before(:all) do
    missing = FrameworkApps.load_error(%w[rails action_controller/railtie action_cable/engine])
    skip "ruby-railties/ruby-actionpack/ruby-actioncable not installed (bin/setup installs them): #{missing}" if missing

    # One process (-w 1): the async cable adapter broadcasts within a process only.
    @server = ServerProcess.new(["-t", "4", "-w", "1", app_path("rails/config.ru")], env: { "RAILS_ENV" => "production" })
  end
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  include_context "a framework app's log stays clean"

  def post_json(path, payload)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 10, open_timeout: 5) do |http|
      http.request(Net::HTTP::Post.new(path, "Content-Type" => "application/json", "Accept" => "application/json"),
                   JSON.generate(payload))
    end
  end

  def live_state
    JSON.parse(http_get(port, "/live-state").body)
  end

  describe "plain requests" do
    it "renders an HTML page from an ERB template (200, text/html, the page, escaped params)" do
      res = http_get(port, "/page?name=%3Cscript%3E")
      expect(res.code).to eq("200")
      expect(res["Content-Type"]).to eq("text/html; charset=utf-8")
      expect(res.body).to include("<h1>Hello from Rails 6.1")
      expect(res.body).to include(%(<p id="name">&lt;script&gt;</p>))
      expect(res["Content-Length"]).to eq(res.body.bytesize.to_s)
      expect(res["ETag"]).to match(%r{\AW/"\h+"\z}) # Rails' Rack::ETag digested the body
      expect(res["X-Request-Id"]).not_to be_nil
      expect(http_get(port, "/").body).to include("Hello from Rails")
    end

    # Rails' Rack::Head swaps the body for [] and Rails sets no Content-Length: a length, if
    # the server sends one, must be the GET's (RFC 9110 section 8.6), never that of the [].
    it "answers HEAD without a body and with no Content-Length but the GET's" do
      raw = raw_request(port, "HEAD /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      expect(raw).to start_with("HTTP/1.1 200")
      expect(raw).to end_with("\r\n\r\n")
      expect(raw).to match(%r{^content-type: text/html; charset=utf-8\r$}i)
      length = raw[/^content-length: (\d+)\r$/i, 1]
      expect(length).to eq(http_get(port, "/page").body.bytesize.to_s).or be_nil
    end

    it "renders JSON (render json:)" do
      res = http_get(port, "/api/items/42", "Accept" => "application/json")
      expect(res.code).to eq("200")
      expect(res["Content-Type"]).to eq("application/json; charset=utf-8")
      expect(JSON.parse(res.body)).to eq("framework" => "rails", "version" => JSON.parse(res.body)["version"],
                                         "id" => "42", "list" => [1, 2, 3])
      expect(JSON.parse(res.body)["version"]).to start_with("6.1")
    end

    it "parses a JSON request body into params and answers 201 with it" do
      payload = { "name" => "widget", "tags" => %w[a b], "nested" => { "n" => 1, "ok" => true } }
      res = post_json("/api/items", payload)
      expect(res.code).to eq("201")
      expect(res["Content-Type"]).to eq("application/json; charset=utf-8")
      body = JSON.parse(res.body)
      expect(body["echo"]).to eq(payload)
      expect(body["content_type"]).to eq("application/json")
      expect(body["length"]).to eq(JSON.generate(payload).bytesize)
    end

    it "parses a large JSON body (over a megabyte, through rack.input)" do
      payload = { "items" => Array.new(40_000) { |i| "item-#{i}-#{"x" * 20}" } }
      res = post_json("/api/items", payload)
      expect(res.code).to eq("201")
      expect(JSON.parse(res.body)["echo"]).to eq(payload)
    end

    it "parses a form-encoded body sent by curl" do
      out = IO.popen(["curl", "-sS", "-i", "--max-time", "10", "-d", "a=1&b=two+words",
                      "http://127.0.0.1:#{port}/api/items"], err: %i[child out], &:read)
      expect(out).to start_with("HTTP/1.1 201")
      expect(JSON.parse(out.split("\r\n\r\n", 2).last)["echo"]).to eq("a" => "1", "b" => "two words")
    end

    it "sends a controller's redirect_to (302, Location)" do
      res = http_get(port, "/moved")
      expect(res.code).to eq("302")
      expect(res["Location"]).to eq("http://127.0.0.1:#{port}/page?name=moved")
      expect(res.body).to include("redirected")
    end

    it "sends a controller's non-200 render (422 JSON)" do
      res = post_json("/api/invalid", {})
      expect(res.code).to eq("422")
      expect(res["Content-Type"]).to eq("application/json; charset=utf-8")
      expect(JSON.parse(res.body)).to eq("errors" => { "name" => ["can't be blank"] })
    end

    it "answers an unknown route with Rails' own 404 page", log_allows: [/\AActionController::RoutingError \(No route matches \[GET\] "\/no\/such\/page"\)/] do
      res = http_get(port, "/no/such/page")
      expect(res.code).to eq("404")
      expect(res["Content-Type"]).to start_with("text/html")
      expect(res.body).to include("rails_app 404 page")
    end

    it "turns an action that raises into Rails' 500 page and keeps serving", log_allows: [/\AArgumentError \(deliberate boom from the Rails app\)/] do
      res = http_get(port, "/boom")
      expect(res.code).to eq("500")
      expect(res.body).to include("rails_app 500 page")
      expect(@server.log_with("deliberate boom from the Rails app")).to include("ArgumentError (deliberate boom from the Rails app)")
      expect(http_get(port, "/page").code).to eq("200")
    end

    it "serves concurrent keep-alive clients on its 4 threads" do
      codes, failures = concurrent_gets(port, clients: 8, requests: 10)
      expect(failures).to be_empty
      expect(codes.size).to eq(80)
      expect(codes.uniq).to eq(["200"])
    end
  end

  describe "ActionController::Live" do
    markers = Array.new(5) { |i| "chunk #{i}\n" }

    # Whatever an example saw, its actions end before the next one starts (so that what they
    # log is checked against the example that ran them).
    after do
      ended = eventually(15) { live_state.then { |s| s["ensured"] == s["started"] } }
      expect(ended).to be(true), "Live actions still running: #{live_state}"
    end

    it "streams the chunks as the action writes them (200, incremental, all 5)" do
      res = timed_get(port, "/live", markers: markers, timeout: 10)
      expect(res.status).to eq(200), "status #{res.status.inspect}; got:\n#{res.raw}"
      expect(res.body).to eq(markers.join)
      expect(res.headers["content-type"]).to eq("text/plain; charset=utf-8")
      expect(res.arrivals.keys).to eq(markers)
      first = res.arrivals[markers.first]
      last = res.arrivals[markers.last]
      expect(last).to be > 1.0 # the action sleeps 0.3 s four times
      expect(first).to be < last - 0.8, "chunks arrived at #{res.arrivals.values.map { |t| t.round(2) }} s: not streamed"
      expect(res.arrivals.values).to eq(res.arrivals.values.sort)
    end

    it "sends Rails' default (Rack::ETag-buffered) Live response whole (200, all 5 chunks, an ETag)" do
      res = timed_get(port, "/live-buffered", markers: markers, timeout: 10)
      expect(res.status).to eq(200), "status #{res.status.inspect}; got:\n#{res.raw}"
      expect(res.body).to eq(markers.join)
      expect(res.headers["etag"]).to match(%r{\AW/"\h+"\z})
    end

    it "ends the action (ClientDisconnected, ensure) when the client leaves mid-stream",
       log_allows: [/\AActionController::Live::ClientDisconnected \(client disconnected\)/, /\AIOError \(closed stream\)/] do
      earlier = live_state
      socket = TCPSocket.new("127.0.0.1", port)
      socket.write("GET /live?count=40 HTTP/1.1\r\nHost: x\r\n\r\n")
      got, = read_for(socket, 5) { |bytes| bytes.include?("chunk 0\n") }
      expect(got).to start_with("HTTP/1.1 200")
      expect(got).to include("chunk 0\n")
      socket.close
      ended = eventually(5) { live_state["ensured"] > earlier["ensured"] }
      expect(ended).to be(true), "the Live action still runs 5 s after its client left"
      expect(live_state["written"] - earlier["written"]).to be < 40
      expect(http_get(port, "/page").code).to eq("200")
    end
  end

  # Each connection's WebSocket, whichever way it is carried (iodine's own layer, or stock
  # Action Cable's rack.hijack + websocket-driver), behaves the same to Action Cable's clients.
  shared_examples "Action Cable's protocol" do
    it "welcomes, subscribes and relays broadcasts between two clients (and from an HTTP request)" do
      result = action_cable_client(url: "ws://127.0.0.1:#{port}/cable", clients: %w[alice bob],
                                   channel: "ChatChannel", text: "hello", timeout: 5,
                                   announce: "http://127.0.0.1:#{port}/announce?text=hi")
      expect(result["error"]).to be_nil
      expect(result["announced"]).to eq(204)
      expected = [{ "text" => "hi", "from" => "server" }, { "text" => "hello from alice", "from" => "alice" },
                  { "text" => "hello from bob", "from" => "bob" }]
      %w[alice bob].each do |name|
        client = result["clients"][name]
        expect(client["subprotocol"]).to eq("actioncable-v1-json")
        expect(client["welcome"]).to eq("type" => "welcome")
        expect(client["confirm"]).to eq("identifier" => JSON.generate("channel" => "ChatChannel"),
                                        "type" => "confirm_subscription")
        expect(client["received"]).to eq(expected)
      end
    end

    it "sends a rejected connection Action Cable's disconnect message and closes it" do
      result = action_cable_client(mode: "connect", url: "ws://127.0.0.1:#{port}/cable?name=intruder", listen: 3, timeout: 5)
      expect(result["error"]).to be_nil
      expect(result["subprotocol"]).to eq("actioncable-v1-json")
      expect(result["messages"]).to eq([{ "type" => "disconnect", "reason" => "unauthorized", "reconnect" => false }])
      expect(result["closed_by_server"]).to be(true)
    end

    it "answers a plain GET of /cable with Action Cable's 404" do
      res = http_get(port, "/cable")
      expect(res.code).to eq("404")
      expect(res.body).to eq("Page not found")
    end

    it "leaks no descriptors and keeps serving HTTP after many cable connections" do
      chat = { url: "ws://127.0.0.1:#{port}/cable", clients: %w[warm], timeout: 5 }
      expect(action_cable_client(**chat)["error"]).to be_nil # Action Cable's event loop starts
      fds = open_fds(@server.pid)
      result = action_cable_client(**chat, clients: Array.new(10) { |i| "c#{i}" })
      expect(result["error"]).to be_nil
      expect(result["clients"]["c0"]["received"].size).to eq(10)
      expect(eventually(5) { open_fds(@server.pid) <= fds + 2 }).to be(true),
                                                                     "open descriptors went from #{fds} to #{open_fds(@server.pid)}"
      expect(eventually(5) { cable_state["connections"].zero? }).to be(true), "Action Cable still counts #{cable_state}"
      codes, failures = concurrent_gets(port, clients: 4, requests: 5)
      expect(failures).to be_empty
      expect(codes.uniq).to eq(["200"])
    end

    it "runs a stream's own block (ShoutChannel transmits each broadcast with a field added)" do
      result = action_cable_client(url: "ws://127.0.0.1:#{port}/cable", clients: %w[ann ben], channel: "ShoutChannel",
                                   text: "hey", timeout: 5)
      expect(result["error"]).to be_nil
      expected = [{ "text" => "hey from ann", "from" => "ann", "shout" => true },
                  { "text" => "hey from ben", "from" => "ben", "shout" => true }]
      expect(result["clients"].values.map { |c| c["received"] }).to eq([expected, expected])
    end

    # Channel code runs on Action Cable's own pool: what it raises, and a message that is not
    # JSON, are Action Cable's to log; both clients stay subscribed and the server's threads
    # are untouched.
    it "keeps a client whose action raised and one that sent garbage, and every worker thread",
       log_allows: [/deliberate boom|JSON::ParserError|unexpected token|Could not execute command|ActiveSupport::JSON/] do
      threads = cable_state["iodine_threads"]
      identifier = JSON.generate(channel: "ChatChannel")
      socket, buffer = subscribed_socket("raiser", "ChatChannel")
      perform = ->(action, extra = {}) do
        data = JSON.generate(extra.merge(action: action))
        socket.write(WsFrames.encode(:text, JSON.generate(command: "message", identifier: identifier, data: data)))
      end
      perform.call("boom")
      perform.call("speak", text: "still here")
      payload, = next_text(socket, buffer, /still here/)
      expect(JSON.parse(payload)["message"]).to eq("text" => "still here", "from" => "raiser")

      garbage, garbage_buffer = subscribed_socket("garbler", "ChatChannel")
      garbage.write(WsFrames.encode(:text, "{not json"))
      garbage.write(WsFrames.encode(:binary, "\xFF\x00".b))
      perform.call("speak", text: "after the garbage")
      expect(next_text(socket, buffer, /after the garbage/).first).to include("raiser")
      expect(next_text(garbage, garbage_buffer, /after the garbage/).first).to include("raiser")
      expect(http_get(port, "/page").code).to eq("200")
      expect(cable_state["iodine_threads"]).to eq(threads)
    ensure
      socket&.close
      garbage&.close
    end

    it "forgets a client that vanished without a close frame (Action Cable runs its close)" do
      socket = TCPSocket.new("127.0.0.1", port)
      socket.write(WsFrames.upgrade_request("/cable?name=vanisher", port: port, key: "dGhlIHNhbXBsZSBub25jZQ==",
                                                                   headers: { "Sec-WebSocket-Protocol" => "actioncable-v1-json" }))
      head = +""
      head << socket.readpartial(4096) until head.include?("\r\n\r\n")
      expect(head).to start_with("HTTP/1.1 101").and match(/^sec-websocket-protocol: actioncable-v1-json\r$/i)
      subscribe = JSON.generate(command: "subscribe", identifier: JSON.generate(channel: "ChatChannel"))
      socket.write(WsFrames.encode(:text, subscribe))
      expect(eventually(5) { cable_state["connections"] == 1 }).to be(true), "Action Cable counts #{cable_state}"
      socket.close # no close frame: the peer is just gone
      expect(eventually(5) { cable_state["connections"].zero? }).to be(true), "Action Cable still counts #{cable_state}"
    ensure
      socket&.close unless socket&.closed?
    end

    it "serves Rails' own JavaScript client in headless Chromium: it connects, subscribes, speaks and receives",
       log_allows: [/favicon/] do
      wanted = ["<li>connected</li>", "<li>chromium: hi from chromium</li>"]
      dom = chromium_chat("http://127.0.0.1:#{port}/chat?name=chromium", wanted)
      wanted.each { |line| expect(dom).to include(line) }
    end
  end

  def cable_state
    JSON.parse(http_get(port, "/status/cable").body)
  end

  # /status/cable while one client (`name`, subscribed to ChatChannel) is connected, once Action
  # Cable counts it; returns after the client left without an error.
  def state_with_one_client(name)
    listener = cable_listener(url: "ws://127.0.0.1:#{port}/cable?name=#{name}", subscribe: "ChatChannel", listen: 2)
    seen = eventually(5) { cable_state["connections"] == 1 }
    state = cable_state
    expect(seen).to be(true), "Action Cable counts #{state}"
    expect(listener.value["error"]).to be_nil
    state
  end

  # The DOM of the /chat page (Rails' Action Cable client, as ?name=`name`) at `url` in
  # headless Chromium (`flags` added), once it shows `wanted`: its load waits for an iframe
  # held 2 s, and a loaded machine may need longer for the page's own traffic, so a miss is
  # retried with a longer hold. The last DOM when none made it.
  def chromium_chat(url, wanted, *flags)
    chromium = Chromium.path
    skip "chromium is not installed (bin/setup installs it)" unless chromium

    dom = nil
    [2, 4, 8].each do |hold|
      dom = Chromium.dump_dom(chromium, "#{url}&hold=#{hold}", *flags)
      break if wanted.all? { |line| dom.include?(line) }
    end
    dom
  end

  # A raw WebSocket to /cable?name=`name` (Action Cable's subprotocol), subscribed to
  # `channel` and confirmed: [socket, bytes read past the confirmation].
  def subscribed_socket(name, channel)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write(WsFrames.upgrade_request("/cable?name=#{name}", port: port, key: "dGhlIHNhbXBsZSBub25jZQ==",
                                                                 headers: { "Sec-WebSocket-Protocol" => "actioncable-v1-json" }))
    buffer = +""
    buffer << socket.readpartial(4096) until buffer.include?("\r\n\r\n")
    expect(buffer).to start_with("HTTP/1.1 101")
    buffer = buffer.split("\r\n\r\n", 2).last.b
    socket.write(WsFrames.encode(:text, JSON.generate(command: "subscribe", identifier: JSON.generate(channel: channel))))
    _, buffer = next_text(socket, buffer, /confirm_subscription/)
    [socket, buffer]
  end

  # The next text frame's payload that matches `pattern` (others are skipped), within 5 s:
  # [payload, what was read past it].
  def next_text(socket, buffer, pattern)
    deadline = FrameworkApps.now + 5
    loop do
      while (frame, used = WsFrames.parse(buffer))
        buffer = buffer.byteslice(used..)
        return [frame.payload.force_encoding(Encoding::UTF_8), buffer] if frame.opcode == :text && frame.payload.match?(pattern)
      end
      raise "no frame matching #{pattern.inspect} within 5 s" if FrameworkApps.now > deadline
      next unless socket.wait_readable(0.2)

      buffer << socket.readpartial(65_536)
    end
  end

  def post_raw(path, body)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 10, open_timeout: 5) do |http|
      http.request(Net::HTTP::Post.new(path, "Content-Type" => "text/plain"), body)
    end
  end

  # Runs the Action Cable client (connect mode) in a thread: its result is the thread's value.
  def cable_listener(**request)
    Thread.new { action_cable_client(mode: "connect", timeout: 5, **request) }
  end

  describe "Action Cable, served by iodine's own WebSocket layer (the default on iodine)" do
    include_examples "Action Cable's protocol"

    it "is a WebSocket of iodine's, not a hijacked socket" do
      expect(state_with_one_client("counted")).to include("native" => true, "iodine_websockets" => 1)
      expect(eventually(5) { cable_state.values_at("connections", "iodine_websockets") == [0, 0] }).to be(true), cable_state.to_s
    end

    it "asks its clients to reconnect when the server stops (Action Cable's server_restart)" do
      server = ServerProcess.new(["-t", "2", "-w", "1", app_path("rails/config.ru")], env: { "RAILS_ENV" => "production" })
      listener = Thread.new do
        action_cable_client(mode: "connect", url: "ws://127.0.0.1:#{server.port}/cable?name=leaving",
                            subscribe: "ChatChannel", listen: 15, timeout: 5)
      end
      expect(eventually(10) { JSON.parse(http_get(server.port, "/status/cable").body)["connections"] == 1 }).to be(true)
      server.stop
      result = listener.value
      expect(result["error"]).to be_nil
      expect(result["messages"]).to include({ "type" => "disconnect", "reason" => "server_restart", "reconnect" => true })
      expect(result["closed_by_server"]).to be(true)
    ensure
      server&.stop
    end

    # A default stream (`stream_from` with no block or coder) writes the broadcast's JSON text
    # around Action Cable's wrapper as it came, where the stock road decodes and encodes it
    # again per subscriber: the spacing of a hand-written broadcast shows which one ran.
    it "writes a default stream's broadcast as it came, once checked to be JSON, and drops one that is not",
       log_allows: [/dropped a broadcast that is not JSON/] do
      socket, buffer = subscribed_socket("raw", "ChatChannel")
      expect(post_raw("/announce-raw", '{"text": "spaced",  "from": "elsewhere"}').code).to eq("204")
      payload, buffer = next_text(socket, buffer, /spaced/)
      expect(payload).to eq(%({"identifier":#{JSON.generate(JSON.generate(channel: 'ChatChannel'))},) +
                            %("message":{"text": "spaced",  "from": "elsewhere"}}))
      expect(post_raw("/announce-raw", '{"text": "cut short"').code).to eq("204")
      expect(post_raw("/announce", "").code).to eq("204") # text=nil: {"text":null,"from":"server"}
      payload, = next_text(socket, buffer, /"from":"server"/)
      expect(payload).not_to include("cut short")
      expect(JSON.parse(payload)["message"]).to eq("text" => nil, "from" => "server")
      expect(log_since(@server, @log_mark)).to include("dropped a broadcast that is not JSON")
    ensure
      socket&.close
    end

    # Stock Action Cable buffers in Ruby, without a bound, what a client does not read; here
    # iodine's outgoing limit (16 MiB) closes such a client, and Action Cable forgets it.
    it "closes a subscriber that stops reading once 16 MiB wait for it, and Action Cable forgets it",
       log_allows: [/closing a client that stopped reading/] do
      socket, = subscribed_socket("sleeper", "ChatChannel")
      socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_RCVBUF, 64 * 1024)
      big = JSON.generate("text" => "x" * (1024 * 1024), "from" => "flood")
      sent = 0
      until cable_state["connections"].zero? || sent == 60
        expect(post_raw("/announce-raw", big).code).to eq("204")
        sent += 1
      end
      expect(eventually(5) { cable_state["connections"].zero? }).to be(true), "after #{sent} MiB: #{cable_state}"
      expect(sent).to be < 60
      expect(log_since(@server, @log_mark)).to include("closing a client that stopped reading")
      expect(http_get(port, "/page").code).to eq("200")
    ensure
      socket&.close
    end

    it "serves Action Cable over HTTP/2 too: Chromium's client opens /cable as an extended CONNECT stream" do
      skip "chromium is not installed (bin/setup installs it)" unless Chromium.path

      server = ServerProcess.new(["-t", "4", "-w", "1", "-v", "-tls", app_path("rails/config.ru")], env: { "RAILS_ENV" => "production" })
      wanted = ["<li>connected</li>", "<li>h2: hi from h2</li>"]
      dom = chromium_chat("https://127.0.0.1:#{server.port}/chat?name=h2", wanted, "--ignore-certificate-errors")
      wanted.each { |line| expect(dom).to include(line) }
      expect(server.log).to include('"CONNECT /cable HTTP/2" 200') # the access log shows the path
    ensure
      server&.stop
    end
  end

  describe "Action Cable, stock (IODINE_ACTION_CABLE=hijack: full rack.hijack and websocket-driver)" do
    before(:all) do
      @server = ServerProcess.new(["-t", "4", "-w", "1", app_path("rails/config.ru")],
                                  env: { "RAILS_ENV" => "production", "IODINE_ACTION_CABLE" => "hijack" })
    end
    after(:all) { @server&.stop }

    include_examples "Action Cable's protocol"

    it "leaves the socket to Action Cable: iodine counts no WebSocket for it" do
      expect(state_with_one_client("hijacked")).to include("native" => false, "iodine_websockets" => 0)
    end

    it "logs no error for the response Action Cable returns after hijacking the socket" do
      # After its `rack.hijack`, Action Cable returns [-1, {}, []], which a server ignores
      # (the socket is no longer its own); the after hook checks the log for it.
      result = action_cable_client(url: "ws://127.0.0.1:#{port}/cable", clients: %w[quiet], timeout: 5)
      expect(result["error"]).to be_nil
      expect(result["clients"]["quiet"]["received"]).to eq([{ "text" => "hello from quiet", "from" => "quiet" }])
    end
  end

  describe "Action Cable with `adapter: iodine` in a 2-worker cluster" do
    before(:all) do
      @server = ServerProcess.new(["-t", "4", "-w", "2", app_path("rails/config.ru")],
                                  env: { "RAILS_ENV" => "production", "CABLE_ADAPTER" => "iodine", "CABLE_MASTER_TICKS" => "1" })
    end
    after(:all) { @server&.stop }

    it "loads the adapter from cable.yml's name" do
      expect(cable_state["adapter"]).to eq("ActionCable::SubscriptionAdapter::Iodine")
    end

    include_examples "Action Cable's protocol"

    it "delivers broadcasts made in another process (the master's, which serves no WebSocket)" do
      result = action_cable_client(mode: "connect", url: "ws://127.0.0.1:#{port}/cable?name=ticked",
                                   subscribe: "TickChannel", listen: 2, timeout: 5)
      expect(result["error"]).to be_nil
      ticks = result["messages"].select { |m| m["message"] == { "text" => "tick", "from" => "master" } }
      expect(ticks.size).to be >= 3
    end

    it "ends its iodine subscriptions when the last stream of a channel stops" do
      result = action_cable_client(url: "ws://127.0.0.1:#{port}/cable", clients: %w[one two], timeout: 5)
      expect(result["error"]).to be_nil
      # "chat" and each connection's internal channel were subscribed; none is left (the
      # counts of the other worker are at most 0.5 s old).
      expect(eventually(5) { cable_state["iodine_channels"].zero? }).to be(true), cable_state.to_s
    end
  end

  # Two servers, as on two machines, sharing one redis-server (`-r`): iodine's default engine
  # is then Redis, so `adapter: iodine` carries a broadcast made on one to clients of the other.
  describe "Action Cable with `adapter: iodine` on two servers sharing Redis (-r)", skip: RedisServer.skip_reason do
    before(:all) do
      @redis = RedisServer.new
      env = { "RAILS_ENV" => "production", "CABLE_ADAPTER" => "iodine" }
      @other = ServerProcess.new(["-t", "2", "-w", "1", "-r", @redis.url, app_path("rails/config.ru")], env: env)
      @server = ServerProcess.new(["-t", "2", "-w", "1", "-r", @redis.url, app_path("rails/config.ru")], env: env)
    end
    after(:all) do
      @server&.stop
      @other&.stop
      @redis&.close
    end

    it "delivers a broadcast made on one server to the clients of the other" do
      listener = cable_listener(url: "ws://127.0.0.1:#{@other.port}/cable?name=far", subscribe: "ChatChannel", listen: 4)
      other_state = -> { JSON.parse(http_get(@other.port, "/status/cable").body) }
      expect(eventually(5) { other_state.call["connections"] == 1 }).to be(true), other_state.call.to_s
      # Both servers subscribed "chat" (Action Cable's confirmation may come before Redis' answer).
      expect(eventually(5) { @redis.cli("PUBSUB", "NUMSUB", "chat").split("\n").last.to_i >= 1 }).to be(true)
      expect(post_raw("/announce?text=across", "").code).to eq("204")
      result = listener.value
      expect(result["error"]).to be_nil
      broadcasts = result["messages"].filter_map { |m| m["message"] if m.key?("identifier") && m["message"].is_a?(Hash) }
      expect(broadcasts).to include({ "text" => "across", "from" => "server" })
    end
  end
end
