# frozen_string_literal: true

require "spec_helper"
require "open3"
require_relative "../support/chromium"
require "tmpdir"

# Every example in examples/ must run.
RSpec.describe "examples/" do
  it "hello.ru says hello" do
    server = ServerProcess.new([File.join(ROOT, "examples", "hello.ru")])
    expect(http_get(server.port, "/").body).to eq("Hello World!")
  ensure
    server&.stop
  end

  it "mustache.ru renders its template and partial, escaping the query" do
    server = ServerProcess.new([File.join(ROOT, "examples", "mustache.ru")])
    body = http_get(server.port, "/?name=%3Cb%3Eyou%3C/b%3E").body
    expect(body).to include("<h1>Iodine::Mustache &amp; friends</h1>")
    expect(body).to include("<li>&lt;b&gt;you&lt;/b&gt; <small>from the query string</small></li>")
  ensure
    server&.stop
  end

  # A real browser: the page opens a WebSocket and an EventSource, and once both are open it
  # sends one message, which comes back through both (pub/sub without a block, from Rust).
  # The same page from `server` in headless Chromium (`flags` added): true once its message
  # came back through both the WebSocket and the EventSource; else the last DOM.
  def chat_round_trip(server, scheme, *flags)
    chromium = Chromium.path
    skip "chromium is not installed (bin/setup installs it)" unless chromium

    url = "#{scheme}://127.0.0.1:#{server.port}/?auto=1&nick=chromium"
    wanted = ["<li>ws: chromium: hello from chromium</li>", "<li>sse: chromium: hello from chromium</li>"]
    # Headless Chromium dumps the DOM when its virtual-time budget runs out, which on a loaded
    # machine can come before the page's own traffic finished: a browser run that missed is
    # retried (the server stays the same), and the last DOM is shown if none made it.
    dom = nil
    3.times do
      dom = Chromium.dump_dom(chromium, url, "--virtual-time-budget=5000", *flags)
      break if wanted.all? { |line| dom.include?(line) }
    end
    wanted.each { |line| expect(dom).to include(line) }
  end

  it "chat.ru carries a message from headless Chromium back over its WebSocket and its EventSource" do
    server = ServerProcess.new(["-t", "2", File.join(ROOT, "examples", "chat.ru")])
    chat_round_trip(server, "http")
  ensure
    server&.stop
  end

  # Over TLS (`-tls`: a self-signed certificate), the page uses wss:// and https; Chromium
  # agrees on HTTP/2 (ALPN), and opens its WebSocket as an extended CONNECT stream (RFC 8441)
  # on the same connection.
  it "chat.ru does the same over TLS and HTTP/2: the page, the EventSource and the WebSocket on h2 streams" do
    server = ServerProcess.new(["-t", "2", "-tls", "-v", File.join(ROOT, "examples", "chat.ru")])
    chat_round_trip(server, "https", "--ignore-certificate-errors")
    log = server.log_with(%r{"CONNECT /ws HTTP/2" 200})
    expect(log).to match(%r{"GET /\?auto=1&nick=chromium HTTP/2" 200|"GET / HTTP/2" 200})
    expect(log).to match(%r{"CONNECT /ws HTTP/2" 200})
  ensure
    server&.stop
  end
end
