# frozen_string_literal: true

require "spec_helper"
require "digest"
require "tmpdir"
require_relative "../support/h2_client"
require_relative "../support/command"

# HTTP/2 on iodine's HTTP listeners: h2c with prior knowledge on cleartext, h2 by ALPN on TLS,
# with real clients (curl, nghttp, h2load) and frames on a raw socket for what no polite
# client sends.
RSpec.describe "HTTP/2" do
  include CommandHelpers

  H2_APP = File.join(ServerProcess::APPS, "http2.ru")

  def h2_tools!
    %w[curl nghttp h2load].each do |tool|
      found = ENV.fetch("PATH", "").split(":").any? { |dir| File.executable?(File.join(dir, tool)) }
      skip "#{tool} is not installed (bin/setup installs nghttp2-client)" unless found
    end
  end

  def start(*flags, env: {})
    ServerProcess.new(["-t", "4", "-w", "1", *flags, H2_APP], env: env)
  end

  def curl(*args, seconds: 20)
    out, err, status, = run_command("curl", "-sS", "--max-time", (seconds - 2).to_s, *args, seconds: seconds)
    [out, err, status]
  end

  def rss(pid)
    File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)\s+kB/, 1].to_i * 1024
  end

  # The answer to a GET over HTTP/1.1 from another connection: the server still serves.
  def bystander(port)
    Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 5) { |h| h.get("/info").code }
  end

  def info(text)
    text.lines.to_h { |l| l.chomp.split("=", 2) }
  end

  before(:all) { @server = start("-v") }
  after(:all) { @server&.stop }

  let(:port) { @server.port }
  let(:base) { "http://127.0.0.1:#{port}" }

  describe "h2c with prior knowledge (curl)" do
    before { h2_tools! }

    it "gives the app the env of an HTTP/1.1 request, with SERVER_PROTOCOL HTTP/2 and no rack.hijack" do
      out, err, = curl("--http2-prior-knowledge", "-H", "x-custom: yes", "-w", "\n%{http_version}", "#{base}/info?a=1&b")
      body, version = out.rpartition("\n").values_at(0, 2)
      expect(version).to eq("2"), err
      env = info(body)
      expect(env).to include("SERVER_PROTOCOL" => "HTTP/2", "HTTP_VERSION" => "HTTP/2",
                             "HTTP_HOST" => "127.0.0.1:#{port}", "SERVER_NAME" => "127.0.0.1",
                             "SERVER_PORT" => port.to_s, "REQUEST_METHOD" => "GET", "PATH_INFO" => "/info",
                             "QUERY_STRING" => "a=1&b", "rack.url_scheme" => "http", "rack.hijack?" => "false",
                             "HTTP_X_CUSTOM" => "yes", "hijack_key" => "false")
      # The same port still speaks HTTP/1.1, with rack.hijack.
      out, = curl("--http1.1", "#{base}/info")
      expect(info(out)).to include("SERVER_PROTOCOL" => "HTTP/1.1", "rack.hijack?" => "true", "hijack_key" => "true")
    end

    it "receives request bodies with flow control: 5 MiB spill to a file, as over HTTP/1.1" do
      Dir.mktmpdir do |dir|
        path = File.join(dir, "up.bin")
        File.binwrite(path, Random.new(7).bytes(5 << 20))
        out, err, = curl("--http2-prior-knowledge", "--data-binary", "@#{path}", "-D", "-", "#{base}/echo")
        head, body = out.split("\r\n\r\n", 2)
        expect(head).to start_with("HTTP/2 200"), err
        expect(head).to include("x-size: #{5 << 20}")
        expect(head).to include("x-input-class: Iodine::Base::RackIO").or include("x-input-class: ")
        expect(Digest::SHA256.hexdigest(body)).to eq(Digest::SHA256.file(path).hexdigest)
      end
    end

    it "answers HEAD without a body and many streams on one connection (nghttp)" do
      out, = curl("--http2-prior-knowledge", "-I", "#{base}/big")
      expect(out).to start_with("HTTP/2 200")
      expect(out).to include("content-length: #{4 << 20}")
      urls = Array.new(30) { |i| "#{base}/info?n=#{i}" }
      out, err, status, = run_command("nghttp", "-n", "-s", *urls, seconds: 30)
      expect(status.success?).to be(true), err
      expect(out.scan(%r{\s200\s+\d+\s+/info\?n=}).size).to eq(30), out
    end

    it "sends a streamed body as it is produced" do
      c = H2Client.new(port)
      c.request(1, "GET", "/stream")
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      arrivals = []
      body = +""
      while (f = c.next_frame(5))
        next unless f.stream == 1

        if f.type == :data && !f.payload.empty?
          arrivals << Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
          body << f.payload
        end
        break if f.end_stream?
      end
      expect(body).to eq("chunk0\nchunk1\nchunk2\n")
      expect(arrivals.first).to be < 0.35
      expect(arrivals.last).to be > 0.7
    ensure
      c&.close
    end

    it "serves static files and X-Sendfile answers (read, not sendfile)" do
      Dir.mktmpdir do |dir|
        data = Random.new(3).bytes(300_000)
        File.binwrite(File.join(dir, "file.bin"), data)
        server = start("-www", dir, env: { "H2_FILE" => File.join(dir, "file.bin") })
        out, err, = curl("--http2-prior-knowledge", "-D", "-", "http://127.0.0.1:#{server.port}/file.bin")
        head, body = out.split("\r\n\r\n", 2)
        expect(head).to start_with("HTTP/2 200"), err
        expect(body.b).to eq(data)
        out, = curl("--http2-prior-knowledge", "http://127.0.0.1:#{server.port}/sendfile")
        expect(out.b).to eq(data)
        out, = curl("--http2-prior-knowledge", "-r", "10-19", "http://127.0.0.1:#{server.port}/file.bin")
        expect(out.b).to eq(data.byteslice(10, 10))
      ensure
        server&.stop
      end
    end

    it "writes HTTP/2 in the access log" do
      curl("--http2-prior-knowledge", "#{base}/info?logged=1")
      expect(@server.log_with(%r{"GET /info HTTP/2" 200})).to match(%r{"GET /info HTTP/2" 200})
    end
  end

  describe "h2 over TLS (ALPN)" do
    before(:all) { @tls = start("-tls") }
    after(:all) { @tls&.stop }

    it "agrees on h2 with clients that offer it and on HTTP/1.1 with those that don't" do
      h2_tools!
      url = "https://127.0.0.1:#{@tls.port}/info"
      out, err, = curl("-k", "--http2", "-w", "\n%{http_version}", url)
      body, version = out.rpartition("\n").values_at(0, 2)
      expect(version).to eq("2"), err
      expect(info(body)).to include("SERVER_PROTOCOL" => "HTTP/2", "rack.url_scheme" => "https")
      out, = curl("-k", "--http1.1", "-w", "\n%{http_version}", url)
      expect(out.rpartition("\n").last).to eq("1.1")
    end

    it "advertises extended CONNECT (RFC 8441) and the stream limit in its SETTINGS" do
      h2_tools!
      out, err, = run_command("nghttp", "-nv", "https://127.0.0.1:#{@tls.port}/info", seconds: 15)
      expect(out).to match(/SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):100/), err
      expect(out).to match(/SETTINGS_ENABLE_CONNECT_PROTOCOL\(0x08\):1|UNKNOWN\(0x08\):1/), out
    end
  end

  describe "SSE over HTTP/2" do
    it "streams events in the response body; a reset stream closes the SSE connection" do
      c = H2Client.new(port)
      c.request(1, "GET", "/sse", extra: [["accept", "text/event-stream"]])
      headers = nil
      data = +""
      while (f = c.next_frame(5))
        headers ||= f.payload if f.type == :headers && f.stream == 1
        data << f.payload if f.type == :data && f.stream == 1
        break if data.include?("\n\r\n") || data.include?("\n\n")
      end
      expect(H2Client.status(headers)).to eq(200)
      expect(data).to match(/\Adata: hi\r?\n\r?\n\z/)
      c.send_frame(:rst_stream, 0, 1, [8].pack("N"))
      expect(@server.log_with("sse closed")).to include("sse closed")
      # The connection goes on.
      c.request(3, "GET", "/info")
      expect(c.response(3).first).to eq(200)
    ensure
      c&.close
    end
  end

  describe "WebSocket over HTTP/2 (RFC 8441)" do
    def ws_frame(opcode, payload)
      mask = Random.new.bytes(4)
      masked = payload.b.bytes.each_with_index.map { |b, i| b ^ mask.getbyte(i % 4) }.pack("C*")
      [0x80 | opcode, 0x80 | payload.bytesize].pack("CC") + mask + masked
    end

    def ws_messages(data)
      out = []
      while data.bytesize >= 2
        len = data.getbyte(1) & 0x7f
        break if data.bytesize < 2 + len

        out << [data.getbyte(0) & 0x0f, data.byteslice(2, len)]
        data = data.byteslice(2 + len..)
      end
      out
    end

    it "carries the same WebSocket session on an extended CONNECT stream" do
      c = H2Client.new(port)
      expect(c.next_frame(5).type).to eq(:settings)
      expect(c.settings[8]).to eq(1) # SETTINGS_ENABLE_CONNECT_PROTOCOL
      c.send_frame(:headers, H2Client::END_HEADERS, 1,
                   H2Client.block([[":method", "CONNECT"], [":protocol", "websocket"], [":scheme", "http"],
                                   [":path", "/ws"], [":authority", "localhost"], ["sec-websocket-version", "13"]]))
      status = nil
      received = +""
      c.send_frame(:data, 0, 1, ws_frame(1, "hello over h2"))
      while (f = c.next_frame(5))
        next unless f.stream == 1

        status ||= H2Client.status(f.payload) if f.type == :headers
        received << f.payload if f.type == :data
        break if ws_messages(received).size >= 2
      end
      expect(status).to eq(200)
      expect(ws_messages(received)).to eq([[1, "open websocket"], [1, "hello over h2"]])
      c.send_frame(:data, 0, 1, ws_frame(8, [1000].pack("n")))
      expect(@server.log_with("ws closed")).to include("ws closed")
    ensure
      c&.close
    end

    it "refuses an extended CONNECT for a protocol it doesn't know (501) and keeps the connection" do
      c = H2Client.new(port)
      c.send_frame(:headers, H2Client::END_HEADERS | H2Client::END_STREAM, 1,
                   H2Client.block([[":method", "CONNECT"], [":protocol", "chat"], [":scheme", "http"],
                                   [":path", "/ws"], [":authority", "localhost"]]))
      expect(c.response(1).first).to eq(501)
      c.request(3, "GET", "/info")
      expect(c.response(3).first).to eq(200)
    ensure
      c&.close
    end
  end

  describe "limits and hostile clients (frames on a socket)" do
    it "refuses streams over max_streams and serves the rest" do
      server = start("-max-streams", "4")
      c = H2Client.new(server.port)
      c.next_frame(5)
      expect(c.settings[3]).to eq(4)
      (0...8).each { |i| c.request(1 + (2 * i), "GET", "/slow?s=0.5") }
      outcomes = Hash.new(0)
      ended = 0
      while ended < 8 && (f = c.next_frame(10))
        if f.type == :rst_stream
          outcomes[f.error] += 1
          ended += 1
        elsif f.type == :data && f.end_stream?
          outcomes[:answered] += 1
          ended += 1
        end
      end
      expect(outcomes).to eq(answered: 4, refused_stream: 4)
      expect(bystander(server.port)).to eq("200")
    ensure
      c&.close
      server&.stop
    end

    it "ends a rapid reset flood (CVE-2023-44487) and keeps serving others" do
      before_count = Net::HTTP.get(URI("#{base}/count")).to_i
      c = H2Client.new(port)
      ended = nil
      sent = 0
      begin
        (0...20_000).each do |i|
          id = 1 + (2 * i)
          c.write(c.frame(:headers, H2Client::END_HEADERS | H2Client::END_STREAM, id, H2Client.request("GET", "/slow?s=0.2")) +
                  c.frame(:rst_stream, 0, id, [8].pack("N")))
          sent += 1
        end
      rescue Errno::EPIPE, Errno::ECONNRESET, IOError
        ended = :closed
      end
      while (f = c.next_frame(3))
        if f.type == :goaway
          ended = f.error
          break
        end
      end
      expect(ended).not_to be_nil, "the server took #{sent} HEADERS+RST_STREAM pairs"
      expect(bystander(port)).to eq("200")
      ran = Net::HTTP.get(URI("#{base}/count")).to_i - before_count
      expect(ran).to be < 2_000, "#{ran} of #{sent} reset requests reached the app"
    ensure
      c&.close
    end

    it "ends a CONTINUATION flood (CVE-2024-27316) with bounded memory" do
      c = H2Client.new(port)
      base_rss = rss(@server.pid)
      c.send_frame(:headers, 0, 1, H2Client.request("GET", "/info"))
      junk = H2Client.block(Array.new(200) { |i| ["x-junk-#{i}", "v" * 60] })
      sent = 0
      closed = false
      begin
        2_000.times do
          c.send_frame(:continuation, 0, 1, junk)
          sent += junk.bytesize
        end
      rescue Errno::EPIPE, Errno::ECONNRESET, IOError
        closed = true
      end
      got = nil
      while (f = c.next_frame(3))
        got = f
        break if %i[goaway rst_stream].include?(f.type) || (f.type == :headers && f.stream == 1)
      end
      expect(closed || got&.type == :goaway || got&.type == :rst_stream || got&.type == :headers).to be(true)
      expect(H2Client.status(got.payload)).to eq(431) if got&.type == :headers
      expect(rss(@server.pid) - base_rss).to be < 64 << 20
      expect(bystander(port)).to eq("200")
    ensure
      c&.close
    end

    it "outlasts PING, SETTINGS and WINDOW_UPDATE floods from a client that never reads" do
      base_rss = rss(@server.pid)
      c = H2Client.new(port)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 3
      sent = 0
      batch = (c.frame(:ping, 0, 0, "12345678") + c.frame(:settings, 0, 0, [4, 65_535].pack("nN")) +
               c.frame(:window_update, 0, 0, [1].pack("N"))) * 200
      begin
        while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
          break unless c.socket.wait_writable(0.5)

          n = c.socket.write_nonblock(batch, exception: false)
          sent += n if n.is_a?(Integer)
        end
      rescue Errno::EPIPE, Errno::ECONNRESET, IOError
        nil
      end
      expect(bystander(port)).to eq("200")
      expect(rss(@server.pid) - base_rss).to be < 64 << 20, "sent #{sent >> 10} KiB of control frames"
    ensure
      c&.close
    end

    it "ends a connection whose WINDOW_UPDATE overflows the window (FLOW_CONTROL_ERROR)" do
      c = H2Client.new(port)
      2.times { c.send_frame(:window_update, 0, 0, [0x7fff_ffff].pack("N")) }
      f = c.next_frame(5)
      f = c.next_frame(5) while f && f.type != :goaway
      expect(f&.error).to eq(:flow_control_error)
      expect(bystander(port)).to eq("200")
    ensure
      c&.close
    end

    it "holds bounded memory for a window that never opens and a client that stops reading" do
      base_rss = rss(@server.pid)
      zero = H2Client.new(port, settings: { 4 => 0 }) # SETTINGS_INITIAL_WINDOW_SIZE = 0
      zero.request(1, "GET", "/big")
      stopped = H2Client.new(port)
      stopped.request(1, "GET", "/huge?mib=300")
      stopped.next_frame(5)
      sleep 2
      expect(bystander(port)).to eq("200")
      expect(rss(@server.pid) - base_rss).to be < 48 << 20
      statuses = []
      while (f = zero.next_frame(0.5))
        statuses << H2Client.status(f.payload) if f.type == :headers
        expect(f.type).not_to eq(:data) unless f.payload.empty?
      end
      expect(statuses).to eq([200])
    ensure
      zero&.close
      stopped&.close
    end

    it "lets a client reset a stream in the middle of a large body, and goes on" do
      c = H2Client.new(port)
      c.request(1, "GET", "/huge?mib=100")
      got = 0
      while got < 256 << 10 && (f = c.next_frame(5))
        next unless f.type == :data && f.stream == 1

        got += f.payload.bytesize
        c.send_frame(:window_update, 0, 0, [f.payload.bytesize].pack("N"))
        c.send_frame(:window_update, 0, 1, [f.payload.bytesize].pack("N"))
      end
      expect(got).to be >= 256 << 10
      c.send_frame(:rst_stream, 0, 1, [8].pack("N"))
      c.request(3, "GET", "/info")
      status, body, = c.response(3)
      expect(status).to eq(200)
      expect(body).to include("SERVER_PROTOCOL=HTTP/2")
    ensure
      c&.close
    end

    it "answers an app that raises with a 500 on that stream" do
      server = start("-k", "1", env: { "H2_RAISE" => "1" })
      c = H2Client.new(server.port)
      c.request(1, "GET", "/raise")
      expect(c.response(1).first).to eq(500)
      c.request(3, "GET", "/info")
      expect(c.response(3).first).to eq(200)
      # With no stream open for the keep-alive timeout (1 s), the connection says GOAWAY.
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      f = c.next_frame(5)
      f = c.next_frame(5) while f && f.type != :goaway
      expect(f&.type).to eq(:goaway)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be_between(0.5, 3.5)
    ensure
      c&.close
      server&.stop
    end

    it "answers a body that stops arriving with 408 on its stream only" do
      server = start("-body-timeout", "1", "-min-rate", "0")
      c = H2Client.new(server.port)
      c.send_frame(:headers, H2Client::END_HEADERS, 1,
                   H2Client.request("POST", "/echo", extra: [["content-length", "10"]]))
      c.send_frame(:data, 0, 1, "ab")
      c.request(3, "GET", "/info")
      expect(c.response(3).first).to eq(200)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect(c.response(1).first).to eq(408)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 5
    ensure
      c&.close
      server&.stop
    end
  end

  describe "shutdown" do
    it "sends GOAWAY and lets an in-flight stream finish" do
      server = start
      c = H2Client.new(server.port)
      c.request(1, "GET", "/slow?s=1.5")
      sleep 0.3
      server.signal("TERM")
      goaway = false
      status = nil
      body = +""
      while (f = c.next_frame(10))
        goaway = true if f.type == :goaway
        status ||= H2Client.status(f.payload) if f.type == :headers && f.stream == 1
        body << f.payload if f.type == :data && f.stream == 1
        break if f.stream == 1 && f.end_stream?
      end
      expect(goaway).to be(true)
      expect([status, body]).to eq([200, "slow"])
      expect(server.wait(15)&.success?).to be(true), server.log
    ensure
      c&.close
      server&.stop
    end

    # GOAWAY tells a client to open no new stream there: h2load counts the requests it then
    # could not submit on that connection as failed (its "Process Request Failure" adds the
    # requests it had left to send) before it reconnects, as a browser would, to a new
    # worker: at most its streams per connection, per connection, per worker replaced. No
    # request it sent gets anything but a 2xx (the in-flight streams finish: see the TERM
    # example above).
    it "loses no request it took when USR1 replaces the workers under h2load" do
      h2_tools!
      server = ServerProcess.new(["-t", "2", "-w", "2", H2_APP])
      signaller = Thread.new do
        sleep 1.5
        server.signal("USR1")
      end
      out, _err, status, = run_command("h2load", "-c", "4", "-m", "4", "-D", "5", "http://127.0.0.1:#{server.port}/info",
                                       seconds: 40)
      signaller.join
      expect(status.success?).to be(true), out
      done = out[/requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/]
      expect(done).not_to be_nil, out
      expect(Regexp.last_match(1).to_i).to be > 100, out
      failed = Regexp.last_match(3).to_i
      expect(out).to include("Process Request Failure") if failed.positive?
      expect(failed).to be <= 4 * 4 * 2, out
      expect(out).to match(/status codes: \d+ 2xx, 0 3xx, 0 4xx, 0 5xx/), out
      expect(server.log).to match(/worker \d+ replaced/)
    ensure
      server&.stop
    end
  end
end
