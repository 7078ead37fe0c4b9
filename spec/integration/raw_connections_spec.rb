# frozen_string_literal: true

require "spec_helper"
require "open3"
require "securerandom"
require_relative "../support/realtime"

# Raw (non-HTTP) servers (api.md §2.1-2.3, §3, §4.4 upgrade decision): listeners whose handler
# is a factory, on TCP (address + port, url raw:// and tcp://, service :raw / :tcp / none, the
# block form) and Unix sockets (address + port 0, url unix://:0/path), and HTTP connections
# turned raw with env["upgrade.tcp"] or env["rack.upgrade"] on a plain request. The peers are
# netcat-openbsd (`nc`), socat and Ruby's sockets. The server is
# spec/support/apps/raw_servers.rb; its control listener (HTTP) tells what its handlers saw.
RSpec.describe "Raw connections" do
  include RealtimeHelpers

  before(:all) do
    @unix_dir = Dir.mktmpdir("iodine-raw")
    @ports = Array.new(6) { ServerProcess.free_port }
    @http, @echo, @echo_url, @nils, @probe, @late = @ports
    script = File.join(ServerProcess::APPS, "raw_servers.rb")
    @server = ServerProcess.new([], script: [script, *@ports.map(&:to_s), @unix_dir], port: @http)
    # The listeners all bind before start; still, wait for the last ones too.
    deadline = Time.now + 10
    sleep 0.05 until File.socket?(File.join(@unix_dir, "url.sock")) || Time.now > deadline
  end

  after(:all) do
    @server&.stop
    FileUtils.rm_rf(@unix_dir) if @unix_dir
  end

  let(:echo_sock) { File.join(@unix_dir, "echo.sock") }
  let(:url_sock) { File.join(@unix_dir, "url.sock") }

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # [stdout (binary), stderr, Process::Status, seconds it took] of `command` (see run_command).
  def run_tool(*command, input: "", seconds: 10)
    run_command(*command, input: input, seconds: seconds).first(4)
  end

  # The records of connections of `kind` ("echo", "unix", "late", "upgraded"), as GET /conns answers them.
  def conns(kind)
    JSON.parse(http_get(@http, "/conns?kind=#{kind}").body)
  end

  # The records of `kind` that appear after `before` of them existed, once `count` of them have closed.
  def new_conns(kind, before, count = 1)
    records = nil
    eventually(5) do
      records = conns(kind).drop(before)
      records.size >= count && records.first(count).all? { |r| r["events"].last == "close" }
    end
    records
  end

  # Writes `bytes` from a thread while reading until EOF (or `seconds`); closes the write side
  # after the last byte. Returns [what came back, whether the server closed].
  def converse(socket, bytes, seconds: 10)
    writer = Thread.new do
      socket.write(bytes)
      socket.close_write
    end
    answer = read_for(socket, seconds)
    writer.join(1)
    answer
  end

  # Reads until `text` (a String, or a Regexp to match) came, the peer closed or `seconds` passed.
  def read_until(socket, text, seconds = 5)
    read_for(socket, seconds) { |got| text.is_a?(Regexp) ? got.match?(text) : got.include?(text) }
  end

  describe "TCP listeners" do
    it "echo what `printf hello | nc -N` sends, then close once nc half-closes (no service:, block form)" do
      before = conns("echo").size
      out, err, status, took = run_tool("sh", "-c", "printf hello | nc -N -w 3 127.0.0.1 #{@echo}")
      expect([out, err, status.success?]).to eq(["hello", "", true])
      expect(took).to be < 2.5, "nc waited for its -w 3: the server did not close after the half-close"
      record = new_conns("echo", before).first
      expect(record["events"].first(2)).to eq(["open :raw env=nil", "drained"])
      expect(record["events"]).to include("message")
      expect(record["events"].last).to eq("close")
      expect(record["events"].count("close")).to eq(1)
      expect(record.values_at("bytes", "encodings")).to eq([5, ["ASCII-8BIT"]])
    end

    it "echo through socat and a Ruby TCPSocket on the url: \"tcp://…\" listener" do
      out, _err, status, took = run_tool("socat", "-t", "5", "-", "TCP:127.0.0.1:#{@echo_url}", input: "from socat\n")
      expect([out, status.success?]).to eq(["from socat\n", true])
      expect(took).to be < 4

      socket = TCPSocket.new("127.0.0.1", @echo_url)
      socket.write("from ruby")
      expect(read_until(socket, "from ruby").first).to eq("from ruby")
      socket.write(" again")
      expect(read_until(socket, " again").first).to eq(" again")
      socket.close_write
      expect(read_for(socket, 5)).to eq(["", true])
    ensure
      socket&.close
    end

    context "with 200 KB of random bytes" do
      let(:payload) { Random.new(42).bytes(200 * 1024) }

      {
        "nc -N" => ->(port) { ["nc", "-N", "-w", "5", "127.0.0.1", port.to_s] },
        "socat" => ->(port) { ["socat", "-t", "5", "-T", "10", "-", "TCP:127.0.0.1:#{port}"] }
      }.each do |tool, command|
        it "echo them byte-exact to #{tool}, in on_message chunks of at most 64 KiB" do
          before = conns("echo").size
          out, err, status = run_tool(*command.call(@echo), input: payload, seconds: 15)
          expect(status.success?).to be(true), err
          expect(out.bytesize).to eq(payload.bytesize)
          expect(out == payload).to be(true), "the echo differs from what #{tool} sent"
          record = new_conns("echo", before).first
          expect(record["bytes"]).to eq(payload.bytesize)
          expect(record["max_chunk"]).to be_between(1, 65_536) # the engine's raw::READ_CHUNK
          expect(record["encodings"]).to eq(["ASCII-8BIT"])
        end
      end

      it "echo them byte-exact to a Ruby TCPSocket that writes while it reads" do
        before = conns("echo").size
        socket = TCPSocket.new("127.0.0.1", @echo)
        out, closed = converse(socket, payload)
        expect(closed).to be(true)
        expect(out.bytesize).to eq(payload.bytesize)
        expect(out == payload).to be(true)
        record = new_conns("echo", before).first
        expect(record["bytes"]).to eq(payload.bytesize)
        expect(record["max_chunk"]).to be_between(1, 65_536) # the engine's raw::READ_CHUNK
      ensure
        socket&.close
      end
    end

    it "close the connection at once, with no callbacks, when the factory answers nil, false or true" do
      calls = JSON.parse(http_get(@http, "/factory").body)["calls"]
      3.times do
        socket = TCPSocket.new("127.0.0.1", @nils)
        socket.write("anyone?") rescue Errno::EPIPE # rubocop:disable Style/RescueModifier
        expect(read_for(socket, 3)).to eq(["", true])
      ensure
        socket&.close
      end
      out, _err, status, took = run_tool("sh", "-c", "printf hello | nc -N -w 3 127.0.0.1 #{@nils}")
      expect([out, status.success?]).to eq(["", true])
      expect(took).to be < 2.5
      expect(JSON.parse(http_get(@http, "/factory").body)["calls"]).to eq(calls + 4)
      expect(http_get(@http, "/").body).to eq("ok")
    end

    it "calls on_drained once right after on_open; the client is :raw, env nil, handler the factory's object" do
      id = unique_id("drained")
      socket = TCPSocket.new("127.0.0.1", @probe)
      sleep 0.5 # nothing sent yet: only on_open and the first on_drained can have run
      socket.write("id #{id}\n")
      expect(read_until(socket, "named #{id}\n").first).to eq("named #{id}\n")
      log = wait_for_events(@http, id) { |l| l.size >= 3 }
      expect(log.first(3)).to eq(["open :raw env=nil handler=true", "drained",
                                  "message ASCII-8BIT #{id.size + 4} first=#{"id #{id}\n".inspect}"])
    ensure
      socket&.close
    end

    # "After n quiet seconds": the C gem reviewed timeouts every second, so a ping came
    # between n and n + 1 seconds after the last read or write; 3.3 s allows that for n = 2.
    it "calls ping after timeout = 2 quiet seconds, and again 2 quiet seconds later; no ping without timeout=" do
      pinged = TCPSocket.new("127.0.0.1", @probe)
      quiet = TCPSocket.new("127.0.0.1", @probe)
      a = unique_id("ping")
      b = unique_id("noping")
      quiet.write("id #{b}\n")
      pinged.write("id #{a}\ntimeout 2\n")
      expect(read_until(pinged, "timeout=2\n").first).to eq("named #{a}\ntimeout=2\n")
      last = now # the server's last write: the connection is quiet from here on
      2.times do |i|
        got, closed = read_until(pinged, "ping\n", 3.3)
        quiet_for = now - last
        expect([got, closed]).to eq(["ping\n", false]),
                                 "ping #{i + 1}: nothing within #{quiet_for.round(2)} s of quiet with timeout = 2 (got #{got.inspect})"
        expect(quiet_for).to be >= 1.8
        last = now
      end
      expect(read_for(quiet, 0.1)).to eq(["named #{b}\n", false])
      expect(events(@http, b)).not_to include("ping")
      expect(events(@http, a).count("ping")).to eq(2)
    ensure
      pinged&.close
      quiet&.close
    end

    it "delivers what the callbacks wrote for bytes sent before nc's half-close, then closes" do
      id = unique_id("half")
      out, _err, status, took = run_tool("sh", "-c", "printf 'id #{id}\\nslow\\nfoo\\n' | nc -N -w 3 127.0.0.1 #{@probe}")
      expect([out, status.success?]).to eq(["named #{id}\nslow done\necho:foo\n", true])
      expect(took).to be < 2.5
      log = wait_for_events(@http, id) { |l| l.last.to_s.start_with?("close") }
      expect(log.last).to eq("close open?=false")
      expect(log.count { |l| l.start_with?("close") }).to eq(1)
    end

    it "client.close sends what was queued, then closes the socket" do
      id = unique_id("close")
      socket = TCPSocket.new("127.0.0.1", @probe)
      socket.write("id #{id}\nclose\n")
      expect(read_for(socket, 5)).to eq(["named #{id}\nbye\n", true])
      expect(wait_for_events(@http, id) { |l| l.last.to_s.start_with?("close") }.last).to eq("close open?=false")
    ensure
      socket&.close
    end

    it "detects callbacks with respond_to? when the handler is attached: methods added in on_open are never called" do
      before = conns("late").size
      socket = TCPSocket.new("127.0.0.1", @late)
      expect(read_until(socket, "\n").first).to eq("added on_message and on_drained\n")
      socket.write("abc")
      expect(read_for(socket, 0.7)).to eq(["", false])
      socket.close
      expect(new_conns("late", before).first["events"]).to eq(%w[open close])
    ensure
      socket&.close
    end

    it "handler= calls the old handler's on_close, then the new one's on_open (its callbacks found with respond_to?)" do
      id = unique_id("swap")
      socket = TCPSocket.new("127.0.0.1", @probe)
      socket.write("id #{id}\nswap\n")
      expect(read_until(socket, /swapped .*\n/).first).to eq("named #{id}\nswapped true handler=Swapped\n")
      socket.write("hi")
      expect(read_until(socket, "swapped:hi").first).to eq("swapped:hi")
      socket.close
      log = wait_for_events(@http, id) { |l| l.last == "swapped close" }
      expect(log.drop_while { |l| !l.start_with?("close") }).to eq(
        ["close open?=true", "swapped open handler=Swapped", "swapped message \"hi\"", "swapped close"]
      )
    ensure
      socket&.close
    end

    it "handler= with the same handler changes nothing; handler= nil closes the connection with one on_close" do
      id = unique_id("same")
      socket = TCPSocket.new("127.0.0.1", @probe)
      socket.write("id #{id}\nsame\n")
      expect(read_until(socket, /same \w+\n/).first).to eq("named #{id}\nsame true\n")
      socket.write("still here\n")
      expect(read_until(socket, "\n").first).to eq("echo:still here\n")
      socket.write("drop\n")
      expect(read_for(socket, 5)).to eq(["", true])
      log = wait_for_events(@http, id) { |l| l.last.to_s.start_with?("close") } - ["drained"]
      expect(log.grep(/\A(open|close)/)).to eq(["open :raw env=nil handler=true", "close open?=false"])
    ensure
      socket&.close
    end
  end

  describe "HTTP connections turned raw" do
    def upgrade(path, id, extra)
      socket = TCPSocket.new("127.0.0.1", @http)
      # The request head and the first raw bytes in one write: they arrive together.
      socket.write("GET #{path}?id=#{id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n#{extra}")
      out, closed = read_for(socket, 5) { |got| got.match?(/echo:[^\n]*\n/) }
      head, rest = out.split("\r\n\r\n", 2)
      [socket, head.to_s, rest.to_s, closed]
    end

    it "env['upgrade.tcp'] sends the app's 101 and headers, then is raw; pipelined bytes reach the first on_message" do
      id = unique_id("tcp")
      socket, head, rest, closed = upgrade("/upgrade-tcp", id, "pipelined\n")
      expect(closed).to be(false)
      expect(head).to start_with("HTTP/1.1 101 ")
      expect(head).to match(/^x-upgraded: ?tcp\r?$/i)
      expect(rest).to eq("echo:pipelined\n")
      socket.write("more\n")
      expect(read_until(socket, "\n").first).to eq("echo:more\n")
      socket.close
      log = wait_for_events(@http, id) { |l| l.last.to_s.start_with?("close") }
      expect(log.first).to start_with("open :raw ")
      expect(log.find { |l| l.start_with?("message") }).to eq('message ASCII-8BIT 10 first="pipelined\n"')
      expect(log.last).to eq("close open?=false")
    ensure
      socket&.close
    end

    it "env['upgrade.tcp']: 20 KB sent with the request head are all echoed, in on_message chunks of at most 64 KiB" do
      payload = Random.new(11).bytes(20_000)
      before = conns("upgraded").size
      socket = TCPSocket.new("127.0.0.1", @http)
      socket.write("GET /upgrade-echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n#{payload}")
      out, closed = read_for(socket, 5) { |got| got.bytesize >= payload.bytesize + 30 && got.include?("\r\n\r\n") && got.split("\r\n\r\n", 2).last.bytesize >= payload.bytesize }
      head, rest = out.split("\r\n\r\n", 2)
      expect(closed).to be(false)
      expect(head).to start_with("HTTP/1.1 101 ")
      expect(rest.to_s.bytesize).to eq(payload.bytesize)
      expect(rest == payload).to be(true), "the echo differs from the bytes sent after the head"
      socket.close
      record = new_conns("upgraded", before).first
      expect(record["bytes"]).to eq(payload.bytesize)
      expect(record["max_chunk"]).to be_between(1, 65_536) # the engine's raw::READ_CHUNK
    ensure
      socket&.close
    end

    it "env['rack.upgrade'] on a plain (not WebSocket, not SSE) request does the same, without the body" do
      id = unique_id("rack")
      socket, head, rest, closed = upgrade("/rack-upgrade", id, "hello\n")
      expect(closed).to be(false)
      expect(head).to start_with("HTTP/1.1 200 ")
      expect(head).to match(/^x-upgraded: ?rack\r?$/i)
      expect(rest).to eq("echo:hello\n")
      socket.write("id #{id}-2\n")
      expect(read_until(socket, "\n").first).to eq("named #{id}-2\n")
      socket.close
      log = wait_for_events(@http, id) { |l| l.any? { |line| line.start_with?("message") } }
      expect(log.first).to start_with("open :raw ")
      expect(log.find { |l| l.start_with?("message") }).to eq('message ASCII-8BIT 6 first="hello\n"')
    ensure
      socket&.close
    end
  end

  describe "Unix socket listeners" do
    it "echo on address: PATH, port: 0 (nc -U, socat, UNIXSocket)" do
      before = conns("unix").size
      out, _err, status, took = run_tool("sh", "-c", "printf hello | nc -N -U -w 3 #{echo_sock}")
      expect([out, status.success?]).to eq(["hello", true])
      expect(took).to be < 2.5
      out, _err, status = run_tool("socat", "-t", "5", "-", "UNIX-CONNECT:#{echo_sock}", input: "via socat")
      expect([out, status.success?]).to eq(["via socat", true])
      records = new_conns("unix", before, 2)
      expect(records.first(2).map { |r| r["events"].first(2) }).to eq([["open :raw env=nil", "drained"]] * 2)
      expect(records.first(2).map { |r| r["bytes"] }).to eq([5, 9])
    end

    it "echo 200 KB byte-exact on url: \"unix://:0/PATH\", in chunks of at most 64 KiB" do
      payload = Random.new(7).bytes(200 * 1024)
      before = conns("unix").size
      socket = UNIXSocket.new(url_sock)
      out, closed = converse(socket, payload)
      expect(closed).to be(true)
      expect(out == payload).to be(true), "got #{out.bytesize} bytes, not the #{payload.bytesize} sent"
      record = new_conns("unix", before).first
      expect(record["bytes"]).to eq(payload.bytesize)
      expect(record["max_chunk"]).to be_between(1, 65_536) # the engine's raw::READ_CHUNK
    ensure
      socket&.close
    end
  end

  # Last: it stops the server.
  describe "graceful stop" do
    it "on INT calls on_shutdown (whose write goes out), then on_close, closes the sockets and exits" do
      ids = [unique_id("stop-a"), unique_id("stop-b")]
      sockets = ids.map do |id|
        socket = TCPSocket.new("127.0.0.1", @probe)
        socket.write("id #{id}\n")
        expect(read_until(socket, "named").first).to eq("named #{id}\n")
        socket
      end
      unix = UNIXSocket.new(echo_sock)
      unix.write("x")
      expect(read_until(unix, "x").first).to eq("x")
      @server.signal("INT")
      sockets.each { |socket| expect(read_for(socket, 10)).to eq(["shutting down\n", true]) }
      expect(read_for(unix, 10)).to eq(["", true])
      status = @server.wait(15)
      expect(status).not_to be_nil, "the server did not exit within 15 s of INT"
      expect(status.success?).to be(true), @server.log
      ids.each do |id|
        mine = @server.log.lines.grep(/\Aevent #{id}: /).map { |l| l.chomp.sub("event #{id}: ", "") } - ["drained"]
        expect(mine.last(2)).to eq(["shutdown", "close open?=false"])
      end
    ensure
      sockets&.each(&:close)
      unix&.close
    end
  end
end
