# frozen_string_literal: true

require "spec_helper"
require_relative "../../lib/iodine/version"
require "json"

RSpec.describe "HTTP/1.1 serving a Rack app" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("echo.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def get_env(path = "/env", headers = {})
    JSON.parse(http_get(port, path, headers).body)
  end

  it "answers a GET with status, body, Date and Content-Length" do
    res = http_get(port, "/")
    expect(res.code).to eq("200")
    expect(res.body).to eq("Hello World!")
    expect(res["Content-Length"]).to eq("12")
    expect(Time.httpdate(res["Date"])).to be_within(5).of(Time.now)
  end

  it "keeps the connection alive across requests" do
    Net::HTTP.start("127.0.0.1", port) do |http|
      first = http.request(Net::HTTP::Get.new("/"))
      second = http.request(Net::HTTP::Get.new("/env"))
      expect(first.body).to eq("Hello World!")
      expect(JSON.parse(second.body)["PATH_INFO"]).to eq("/env")
    end
  end

  it "builds the Rack env from the request" do
    env = get_env("/env?a=1&b=%20x", "Cookie" => "k=v", "X-Custom" => "yes")
    expect(env).to include(
      "REQUEST_METHOD" => "GET", "PATH_INFO" => "/env", "QUERY_STRING" => "a=1&b=%20x",
      "SERVER_NAME" => "127.0.0.1", "SERVER_PORT" => port.to_s, "SERVER_PROTOCOL" => "HTTP/1.1",
      "HTTP_VERSION" => "HTTP/1.1", "REMOTE_ADDR" => "127.0.0.1", "SCRIPT_NAME" => "",
      "HTTP_COOKIE" => "k=v", "HTTP_X_CUSTOM" => "yes", "rack.url_scheme" => "http",
      "input_class" => "Iodine::Base::RackIO", "rack.version" => [1, 3], "rack.multithread" => true,
      "rack.hijack?" => true, "SERVER_SOFTWARE" => "iodine/#{Iodine::VERSION}"
    )
  end

  it "does not percent-decode PATH_INFO and gives an empty QUERY_STRING for a dangling ?" do
    env = JSON.parse(raw_request(port, "GET /env/a%20b? HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").split("\r\n\r\n", 2).last)
    expect(env["PATH_INFO"]).to eq("/env/a%20b")
    expect(env["QUERY_STRING"]).to eq("")
    expect(env["SERVER_NAME"]).to eq("h")
    expect(env["SERVER_PORT"]).to eq(port.to_s)
  end

  it "joins repeated headers into one String (cookies with '; ')" do
    raw = "GET /env HTTP/1.1\r\nHost: x:81\r\nCookie: a=1\r\nCookie: b=2\r\nAccept: text/html\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    env = JSON.parse(raw_request(port, raw).split("\r\n\r\n", 2).last)
    expect(env["HTTP_COOKIE"]).to eq("a=1; b=2")
    expect(env["HTTP_ACCEPT"]).to eq("text/html, */*")
    expect(env["SERVER_PORT"]).to eq("81")
  end

  it "takes rack.url_scheme from X-Forwarded-Proto" do
    expect(get_env("/env", "X-Forwarded-Proto" => "https")["rack.url_scheme"]).to eq("https")
  end

  it "passes request bodies through rack.input (small, large and chunked), rewindable" do
    small = get_body_roundtrip("hello")
    expect(small).to eq("hello")
    large = Random.new(1).bytes(300_000)
    expect(get_body_roundtrip(large)).to eq(large)
    chunked = "POST /env HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" \
              "4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    env = JSON.parse(raw_request(port, chunked).split("\r\n\r\n", 2).last)
    expect(env["body"]).to eq("abcdefg")
    expect(env["body_again"]).to eq("abcdefg")
    expect(env["CONTENT_LENGTH"]).to eq("7")
  end

  def get_body_roundtrip(data)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 20) do |http|
      req = Net::HTTP::Post.new("/echo")
      req.body = data
      http.request(req).body.b
    end
  end

  it "answers Expect: 100-continue (curl)" do
    file = File.join(Dir.tmpdir, "iodine-upload-#{Process.pid}")
    File.binwrite(file, "z" * 2_000_000)
    out = IO.popen(["curl", "-s", "-v", "--max-time", "10", "-H", "Expect: 100-continue", "--data-binary", "@#{file}",
                    "http://127.0.0.1:#{port}/echo"], err: %i[child out], &:read)
    expect(out).to include("HTTP/1.1 100 Continue")
    expect(out).to include("z" * 1000)
  ensure
    File.delete(file) if file && File.exist?(file)
  end

  it "sends HEAD responses without a body" do
    res = Net::HTTP.start("127.0.0.1", port) { |h| h.request(Net::HTTP::Head.new("/")) }
    expect(res.code).to eq("200")
    expect(res.body).to be_nil
    raw = raw_request(port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(raw).to end_with("\r\n\r\n")
    expect(raw).to match(/^content-length: 12\r$/i) # what a GET would get
    raw = raw_request(port, "HEAD /multi-header HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(raw).to match(/^content-length: 2\r$/i) # computed from the Array body
    expect(raw).to end_with("\r\n\r\n")
  end

  it "sends any status 100..999 as itself, 418 included" do
    expect(http_get(port, "/status?418").code).to eq("418")
    expect(http_get(port, "/status?299").code).to eq("299")
    expect(http_get(port, "/status?599").code).to eq("599")
  end

  it "sends no body for 204 and 304" do
    raw = raw_request(port, "GET /status?204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(raw).to start_with("HTTP/1.1 204")
    expect(raw).to end_with("\r\n\r\n")
  end

  it "splits header values on newlines and sends Array values as several lines" do
    raw = raw_request(port, "GET /multi-header HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(raw.scan(/^set-cookie: (.*)\r$/i).flatten).to eq(%w[a=1 b=2])
    expect(raw.scan(/^x-list: (.*)\r$/i).flatten).to eq(%w[x y])
    expect(raw).not_to match(/x-nil/i)
  end

  it "streams each-bodies as they are produced and closes them once" do
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    received = +""
    received << socket.readpartial(4096) until received.include?("one")
    first_at = Time.now
    expect(received).not_to include("three") # the app is still sleeping between chunks
    received << socket.read
    socket.close
    expect(Time.now - first_at).to be > 0.2
    expect(received).to include("transfer-encoding: chunked")
    expect(received).to include("three").and end_with("0\r\n\r\n")
    expect(JSON.parse(http_get(port, "/closed").body)["stream"]).to eq(1)
  end

  it "streams Rack 3 callable bodies, written from another thread, until the app closes the stream" do
    raw = raw_request(port, "GET /rack3-stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(raw).to include("transfer-encoding: chunked")
    body = raw.split("\r\n\r\n", 2).last.split("\r\n").each_slice(2).map { |_size, data| data }.join
    expect(body).to eq("first;second;third")
  end

  it "serves to_path bodies from the file and closes them once" do
    res = http_get(port, "/file")
    expect(res.body).to eq(File.read(app_path("echo.ru")))
    expect(res["Content-Length"]).to eq(File.size(app_path("echo.ru")).to_s)
    expect(JSON.parse(http_get(port, "/closed").body)["file"]).to eq(1)
  end

  it "turns an app exception into a logged 500 and keeps serving" do
    res = http_get(port, "/raise")
    expect(res.code).to eq("500")
    expect(http_get(port, "/").body).to eq("Hello World!")
    expect(@server.log_with("boom from the app")).to include("Iodine caught an unprotected exception - ArgumentError: boom from the app")
    # The backtrace: its lines follow the ERROR line, written by the log thread a moment later.
    expect(@server.log_with(/echo\.ru:\d+/)).to match(/echo\.ru:\d+/)
  end

  it "turns an invalid Rack response into a 500" do
    expect(http_get(port, "/bad-response").code).to eq("500")
    expect(@server.log_with("invalid Rack response")).to include("invalid Rack response")
  end

  it "cuts the connection when a streamed body raises midway (no silent truncation)" do
    raw = raw_request(port, "GET /raise-in-each HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(raw).not_to end_with("0\r\n\r\n") # never a well-formed (truncated) response
    expect(@server.log_with("boom in each")).to include("RuntimeError: boom in each")
    expect(http_get(port, "/").code).to eq("200")
  end

  it "closes the connection when the app sends Connection: close" do
    raw = raw_request(port, "GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(raw.scan("HTTP/1.1 200").size).to eq(1)
    expect(raw).to end_with("bye")
  end

  it "closes HTTP/1.0 connections without keep-alive" do
    raw = raw_request(port, "GET / HTTP/1.0\r\nHost: x\r\n\r\n", timeout: 5)
    expect(raw).to match(%r{\AHTTP/1\.[01] 200})
    expect(raw).to end_with("Hello World!")
  end

  it "answers pipelined requests in order" do
    raw = raw_request(port, "GET /status?201 HTTP/1.1\r\nHost: x\r\n\r\nGET /status?202 HTTP/1.1\r\nHost: x\r\n\r\n" \
                            "GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(raw.scan(%r{HTTP/1\.1 (\d+)}).flatten).to eq(%w[201 202 200])
  end

  it "hands the socket to the app on rack.hijack (also after app.call returns)" do
    res = http_get(port, "/hijack")
    expect(res.body).to eq("hijacked")
    raw = raw_request(port, "GET /hijack-later HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(raw).to eq("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater")
    expect(http_get(port, "/").body).to eq("Hello World!")
  end

  it "serves 1,500 concurrent connections" do
    soft, hard = Process.getrlimit(:NOFILE)
    Process.setrlimit(:NOFILE, [hard, 4096].min, hard) if soft < 4096
    sockets = Array.new(1500) { TCPSocket.new("127.0.0.1", port) }
    sockets.each { |s| s.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") }
    bodies = Timeout.timeout(60) { sockets.map { |s| s.read.split("\r\n\r\n", 2).last } }
    expect(bodies.uniq).to eq(["Hello World!"])
  ensure
    sockets&.each(&:close)
  end

  it "sends large bodies whole" do
    expect(http_get(port, "/big").body.bytesize).to eq(1_000_000)
  end

  describe "bad input" do
    it "answers a request without Host with 400 and closes" do
      expect(raw_request(port, "GET / HTTP/1.1\r\n\r\n")).to start_with("HTTP/1.1 400")
    end

    it "answers malformed requests with 400 and closes" do
      expect(raw_request(port, "GET / HTTP/1.1\r\nHost x\r\n\r\n")).to start_with("HTTP/1.1 400")
      expect(raw_request(port, "\x00\x01garbage\r\n\r\n")).to start_with("HTTP/1.1 400")
      expect(raw_request(port, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"))
        .to start_with("HTTP/1.1 400")
    end

    it "rejects h2c upgrades with 400" do
      expect(raw_request(port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n")).to start_with("HTTP/1.1 400")
    end

    it "refuses oversized heads with 431" do
      big = "a" * 40_000
      expect(raw_request(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: #{big}\r\n\r\n")).to start_with("HTTP/1.1 431")
    end

    it "keeps serving after all of that" do
      expect(http_get(port, "/").body).to eq("Hello World!")
    end
  end
end

RSpec.describe "HTTP limits from the command line" do
  it "refuses bodies over -maxbd MiB with 413" do
    server = ServerProcess.new(["-maxbd", "1", app_path("echo.ru")])
    declared = raw_request(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
    expect(declared).to start_with("HTTP/1.1 413")
    chunk = "#{(64 * 1024).to_s(16)}\r\n#{'a' * 64 * 1024}\r\n"
    chunked = raw_request(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n#{chunk * 20}0\r\n\r\n")
    expect(chunked).to start_with("HTTP/1.1 413")
    expect(http_get(server.port, "/").code).to eq("200")
  ensure
    server&.stop
  end

  it "closes idle keep-alive connections after -k seconds" do
    server = ServerProcess.new(["-k", "1", app_path("echo.ru")])
    socket = TCPSocket.new("127.0.0.1", server.port)
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    started = Time.now
    data = Timeout.timeout(10) { socket.read }
    expect(data).to include("Hello World!")
    expect(Time.now - started).to be_between(0.5, 5)
  ensure
    socket&.close
    server&.stop
  end
end
