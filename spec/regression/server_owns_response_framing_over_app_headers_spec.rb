# frozen_string_literal: true

require "spec_helper"

# The server frames responses itself: an app's Transfer-Encoding header, a Content-Length
# that is not a number, one that does not match the body, and rack 2.2's Rack::Chunked must
# never give the client an invalid, doubly framed, truncated-without-notice or empty reply.
RSpec.describe "the server owns response framing, whatever framing headers the app sets" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("app_framing_headers.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  # Sends a `Connection: close` GET and reads until the server ends the connection (or
  # `deadline` seconds pass). Returns [bytes, ended_by_server].
  def raw_get(path, deadline: 3)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    read_for(socket, deadline)
  ensure
    socket&.close
  end

  # [status line, [[lowercased name, value], ...], raw body bytes]
  def parse(raw)
    head, body = raw.split("\r\n\r\n", 2)
    lines = head.to_s.split("\r\n")
    status = lines.shift
    headers = lines.map do |line|
      name, value = line.split(":", 2)
      [name.downcase, value.to_s.strip]
    end
    [status, headers, body || ""]
  end

  def values(headers, name)
    headers.select { |n, _| n == name }.map(&:last)
  end

  # Strict chunked decoding; returns [decoded, bytes after the last chunk and trailers].
  def dechunk(data)
    out = +""
    rest = data
    loop do
      size_line, rest = rest.split("\r\n", 2)
      raise "invalid chunked framing at #{size_line.inspect} in #{data.inspect}" unless rest && size_line =~ /\A\h+(;.*)?\z/

      size = size_line.to_i(16)
      if size.zero?
        return [out, rest.byteslice(2..)] if rest.start_with?("\r\n")

        _trailers, after = rest.split("\r\n\r\n", 2)
        raise "unterminated chunked body in #{data.inspect}" unless after

        return [out, after]
      end
      raise "chunk of #{size} bytes is short in #{data.inspect}" if rest.bytesize < size + 2 || rest.byteslice(size, 2) != "\r\n"

      out << rest.byteslice(0, size)
      rest = rest.byteslice((size + 2)..)
    end
  end

  # The body as a client decodes it: chunked, by Content-Length, or up to the close.
  def decoded_body(headers, body)
    if values(headers, "transfer-encoding").any? { |v| v.downcase.include?("chunked") }
      decoded, after = dechunk(body)
      expect(after).to eq(""), "bytes after the chunked body: #{after.inspect}"
      decoded
    elsif (length = values(headers, "content-length").first)
      expect(length).to match(/\A\d+\z/)
      expect(body.bytesize).to eq(Integer(length)), "body #{body.inspect} vs content-length #{length}"
      body
    else
      body
    end
  end

  it "(a) an app's Transfer-Encoding: chunked over an Array body gives one valid framing and the body \"hello\"" do
    raw, = raw_get("/te-chunked")
    status, headers, body = parse(raw)
    expect(status).to start_with("HTTP/1.1 200"), "reply: #{raw.inspect}"
    expect(values(headers, "transfer-encoding").size).to be <= 1, "reply: #{raw.inspect}"
    both = !values(headers, "transfer-encoding").empty? && !values(headers, "content-length").empty?
    expect(both).to be(false), "content-length together with transfer-encoding: #{raw.inspect}"
    expect(decoded_body(headers, body)).to eq("hello")
  end

  it "(b) a streamed body with Content-Length \"abc\" still reaches the client whole, chunked" do
    raw, = raw_get("/each-cl-abc")
    status, headers, body = parse(raw)
    expect(status).to start_with("HTTP/1.1 200"), "reply: #{raw.inspect}"
    expect(values(headers, "content-length")).to eq([]), "reply: #{raw.inspect}"
    expect(values(headers, "transfer-encoding")).to eq(["chunked"]), "reply: #{raw.inspect}"
    expect(decoded_body(headers, body)).to eq("hello world")
  end

  it "(b) a streamed body with Content-Length \"5\\n6\" still reaches the client whole, chunked" do
    raw, = raw_get("/each-cl-multi")
    status, headers, body = parse(raw)
    expect(status).to start_with("HTTP/1.1 200"), "reply: #{raw.inspect}"
    expect(values(headers, "content-length")).to eq([]), "reply: #{raw.inspect}"
    expect(values(headers, "transfer-encoding")).to eq(["chunked"]), "reply: #{raw.inspect}"
    expect(decoded_body(headers, body)).to eq("hello world")
  end

  it "(c) a streamed body shorter than its Content-Length: 100 sends the head and the 5 bytes, then closes" do
    raw, ended = raw_get("/each-cl-short")
    expect(raw).not_to eq(""), "an empty reply"
    status, headers, body = parse(raw)
    expect(status).to start_with("HTTP/1.1 200"), "reply: #{raw.inspect}"
    expect(values(headers, "content-length")).to eq(["100"]), "reply: #{raw.inspect}"
    expect(body).to eq("short")
    expect(ended).to be(true), "the connection was not closed after the short body"
  end

  it "(d) rack 2.2's Rack::Chunked body decodes once to the plain text (no chunk framing inside)" do
    res = Net::HTTP.start("127.0.0.1", port, open_timeout: 3, read_timeout: 3) do |http|
      http.request(Net::HTTP::Get.new("/rack-chunked"))
    end
    expect(res.code).to eq("200")
    expect(res.body).to eq("Hello, chunked world!")
  end

  it "keeps serving afterwards" do
    expect_serving(@server)
  end
end
