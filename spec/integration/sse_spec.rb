# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# Server-Sent Events (api.md §5, §4.1, §4.4 and the compatibility policy's SSE fixes): the
# detection, the response head, every form of `write`, Last-Event-ID, `: ping` comments,
# connection pub/sub and a client leaving. Clients: curl and raw sockets. The app is
# spec/support/apps/sse.ru.
RSpec.describe "SSE" do
  include RealtimeHelpers

  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("sse.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  # curl -N: [status line and headers, body] of a stream the server ends (or `seconds` pass).
  def curl_stream(path, accept:, headers: {}, seconds: 5)
    args = ["curl", "-N", "-s", "-i", "--max-time", seconds.to_s, "-H", "Accept: #{accept}"]
    headers.each { |name, value| args.push("-H", "#{name}: #{value}") }
    out = IO.popen([*args, http_url(port, path)], "rb", err: File::NULL, &:read)
    head, body = out.split("\r\n\r\n", 2)
    [head.to_s, body.to_s]
  end

  # A raw stream request; returns the socket.
  def open_stream(path, accept: "text/event-stream", port: self.port)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: #{accept}\r\n\r\n")
    socket
  end

  # Reads `socket` until `text` arrived (or `seconds` pass); returns what arrived.
  def read_until(socket, text, seconds = 5)
    read_for(socket, seconds) { |out| out.include?(text) }.first
  end

  def header(head, name)
    head.lines.drop(1).map { |line| line.chomp.split(":", 2) }.select { |n, _| n.strip.casecmp?(name) }
        .map { |_, value| value.strip }
  end

  it "detects Accept: text/event-stream, */* and answers 200, content-type text/event-stream and the app's headers" do
    id = unique_id("head")
    head, body = curl_stream("/stream?id=#{id}&mode=forms", accept: "text/event-stream, */*")
    expect(head).to start_with("HTTP/1.1 200")
    expect(header(head, "content-type")).to match([a_string_starting_with("text/event-stream")])
    expect(header(head, "set-cookie")).to eq(["s=1"])
    expect(header(head, "x-app")).to eq(["yes"])
    expect(header(head, "content-length")).to eq([])
    expect(body).to end_with("data: done\r\n\r\n")
    expect(events(port, id).first(2)).to eq(["call :sse", "open :sse"])
  end

  it "detects Accept: text/event-stream alone; any other Accept is an ordinary request (rack.upgrade? nil)" do
    id = unique_id("detect")
    socket = open_stream("/stream?id=#{id}&mode=hello")
    expect(read_until(socket, "data: hello\r\n\r\n")).to start_with("HTTP/1.1 200").and include("data: hello\r\n\r\n")
    socket.close

    other = unique_id("other")
    response = http_get(port, "/stream?id=#{other}", "Accept" => "text/html")
    expect([response.code, response.body]).to eq(["200", "not sse"])
    expect(events(port, other)).to eq(["call nil"])
  end

  it "also takes Upgrade: sse (without Accept) as an event-stream request, as the C gem did" do
    id = unique_id("upgrade-sse")
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET /stream?id=#{id}&mode=hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: sse\r\n\r\n")
    expect(read_until(socket, "data: hello\r\n\r\n")).to start_with("HTTP/1.1 200").and include("data: hello\r\n\r\n")
    expect(events(port, id).first).to eq("call :sse")
  ensure
    socket&.close
  end

  it "writes a line per data: line (any line break), event/id/retry by keywords or a Hash, nothing for an empty String" do
    id = unique_id("forms")
    _, body = curl_stream("/stream?id=#{id}&mode=forms", accept: "text/event-stream")
    stream = body.split("\r\n\r\n")
    expect(stream.size).to eq(5), body.inspect
    expect(stream[0]).to eq("data: a\r\ndata: b")
    expect(stream[1]).to eq("data: c\r\ndata: d\r\ndata: e")
    expect(stream[2].split("\r\n")).to contain_exactly("event: e", "id: 7", "retry: 3000", "data: x")
    expect(stream[2]).to end_with("data: x")
    expect(stream[3].split("\r\n")).to contain_exactly("event: e2", "id: 8", "data: y")
    expect(stream[3]).to end_with("data: y")
    expect(stream[4]).to eq("data: done")
    writes = wait_for_events(port, id) { |l| l.include?("close") }.grep(/\Awrites /)
    expect(writes).to match([/\Awrites \[true, true, true, true, \w+, true\]\z/])
  end

  it "hands the app Last-Event-ID as env['HTTP_LAST_EVENT_ID']" do
    _, body = curl_stream("/stream?id=#{unique_id('last')}&mode=last", accept: "text/event-stream",
                          headers: { "Last-Event-ID" => "41" })
    expect(body).to eq("data: last=41\r\n\r\n")
  end

  it "calls on_drained once right after on_open" do
    id = unique_id("drained")
    socket = open_stream("/stream?id=#{id}&mode=hello")
    read_until(socket, "data: hello\r\n\r\n")
    log = wait_for_events(port, id) { |l| l.size >= 3 }
    expect(log.first(3)).to eq(["call :sse", "open :sse", "drained"])
  ensure
    socket&.close
  end

  {
    "a FIN" => ->(socket) { socket.close },
    "an RST" => lambda { |socket|
      socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii"))
      socket.close
    }
  }.each do |how, leave|
    it "runs on_close when the client leaves (#{how})" do
      id = unique_id("leave")
      socket = open_stream("/stream?id=#{id}&mode=idle")
      read_until(socket, "\r\n\r\n")
      expect(wait_for_events(port, id) { |l| l.include?("open :sse") }).to include("open :sse")
      leave.call(socket)
      expect(wait_for_events(port, id) { |l| l.include?("close") }).to include("close")
      expect_serving(@server)
    ensure
      socket&.close unless socket&.closed?
    end
  end

  it "subscribe without a block sends each message as a data event; subscribe(as: :binary) answers nil" do
    id = unique_id("sub")
    socket = open_stream("/stream?id=#{id}&mode=sub")
    before = read_until(socket, "data: subscribed\r\n\r\n")
    expect(events(port, id)).to include("binary nil")
    http_get(port, "/publish?ch=sse-bin-#{id}&msg=never")
    expect(http_get(port, "/publish?ch=sse-#{id}&msg=line1%0Aline2").body).to eq("true")
    out = before + read_until(socket, "data: line2\r\n\r\n")
    expect(out).to end_with("data: subscribed\r\n\r\ndata: line1\r\ndata: line2\r\n\r\n")
    expect(out).not_to include("never")
  ensure
    socket&.close
  end

  it "writes `: ping` comments to an idle stream every second with -ping 1, and no data" do
    server = ServerProcess.new(["-ping", "1", app_path("sse.ru")])
    socket = open_stream("/stream?mode=idle", port: server.port)
    out, closed = read_for(socket, 4.5) { |o| o.scan(/^: ping/).size >= 2 }
    expect(closed).to be(false)
    head, body = out.split("\r\n\r\n", 2)
    expect(head).to start_with("HTTP/1.1 200")
    expect(body.to_s.scan(/^: ping/).size).to be >= 2
    expect(body).not_to include("data:")
  ensure
    socket&.close
    server&.stop
  end
end
