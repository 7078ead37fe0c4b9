# frozen_string_literal: true

require "spec_helper"
require "open3"
require "securerandom"
require "tempfile"
require_relative "../support/realtime"

# Connections an iodine process opens itself (api.md §1.2 connect/attach_fd, §2.4, §3):
# Iodine.connect as a WebSocket client (against Python's `websockets`, our own WebSocket
# server and examples/chat.ru) and as a raw TCP/Unix client (against a Python asyncio echo
# server and socat), its failures (each exactly one on_close, never on_open), a crowd of 1,000
# clients, and Iodine.attach_fd. Each example runs an iodine script in a child process (the
# handlers are spec/support/apps/client_recorder.rb's Recorder) and checks the JSON it prints.
# The Python peers are spec/support/socket_peers.py.
# The child processes of these specs: iodine client scripts and the Python peers.
module ClientScripts
  RECORDER = File.join(ServerProcess::APPS, "client_recorder.rb")
  PEERS = File.join(ROOT, "spec", "support", "socket_peers.py")

  Peer = Struct.new(:port, :stdin, :wait)

  module_function

  # Starts socket_peers.py MODE; it lives until its stdin closes.
  def start_peer(mode)
    stdin, stdout, wait = Open3.popen2(RealtimeHelpers.python, PEERS, mode, err: File::NULL)
    line = IO.select([stdout], nil, nil, 10) && stdout.gets
    raise "socket_peers.py #{mode} did not start" unless line&.start_with?("PORT ")

    stdout.close
    Peer.new(Integer(line.split.last), stdin, wait)
  end

  def stop_peer(peer)
    return unless peer

    peer.stdin.close unless peer.stdin.closed?
    return if peer.wait.join(5)

    Process.kill("KILL", peer.wait.pid)
    peer.wait.join
  end

  # What `io` holds until EOF, or until it is closed under the reader ("" then).
  def read_all(io)
    io.read
  rescue IOError
    ""
  end

  # Runs `body` (after `require client_recorder.rb`) in a new Ruby, killed after `seconds`;
  # returns the JSON of its last stdout line (a script that printed none raises, with its
  # stderr). SHOW_RESULTS=1 prints each result.
  def run_iodine(body, seconds: 20)
    Tempfile.create(["iodine-client", ".rb"]) do |file|
      file.write("require #{RECORDER.inspect}\n#{body}")
      file.flush
      Open3.popen3(RbConfig.ruby, "-I#{ROOT}/lib", file.path) do |stdin, stdout, stderr, wait|
        stdin.close
        # A grandchild may hold the pipes past the script's exit; closing them then ends these.
        out = Thread.new { read_all(stdout) }
        err = Thread.new { read_all(stderr) }
        unless wait.join(seconds)
          Process.kill("KILL", wait.pid)
          wait.join
          raise "the iodine script ran over #{seconds}s:\n#{err.value}"
        end
        begin
          result = JSON.parse(out.value.lines.last.to_s)
        rescue JSON::ParserError
          raise "the iodine script printed no result (#{wait.value}):\n#{out.value}\n#{err.value}"
        end
        warn JSON.generate(result) if ENV["SHOW_RESULTS"]
        result
      end
    end
  end
end

RSpec.describe "Iodine clients" do
  include RealtimeHelpers
  include ClientScripts

  before(:all) do
    @ws_peer = ClientScripts.start_peer("ws")
    @echo_peer = ClientScripts.start_peer("echo")
    @silent_peer = ClientScripts.start_peer("silent")
  end

  after(:all) do
    [@ws_peer, @echo_peer, @silent_peer].each { |peer| ClientScripts.stop_peer(peer) }
  end

  # The events without the on_drained ones (when the write buffer drains is the server's business).
  def without_drained(events)
    events - ["drained"]
  end

  describe "Iodine.connect as a WebSocket client" do
    it "talks to a Python websockets server: path, Host, headers (Array = one line each), one Cookie header, " \
       "masked frames echoed, a fragmented message whole" do
      result = run_iodine(<<~RUBY, seconds: 20)
        big = Random.new(1).bytes(100 * 1024)
        ws = nil
        ws = Recorder.new("ws",
          on_open: ->(c) { c.write("hello é"); c.write("\\x00\\x01bin".b); c.write(big); c.write("fragments") },
          on_message: ->(c, _d) { c.close if ws.messages.size == 5 })
        returned = Iodine.connect(url: "ws://127.0.0.1:#{@ws_peer.port}/chat?room=1", handler: ws,
                                  headers: { "X-Test" => "one", :"X-Multi" => ["a", "b"] }, cookies: { a: 1, "b" => "2" })
        Recorder.stop_when(15)
        Iodine.start
        first, *echoes = ws.messages
        puts JSON.generate(
          "returned" => returned.inspect, "events" => ws.events, "request" => JSON.parse(first.to_s),
          "echoes" => echoes.first(2).map { |m| [m.encoding.to_s, m.unpack1("H*")] },
          "big" => echoes[2] == big, "big_encoding" => echoes[2]&.encoding.to_s, "first_encoding" => first.encoding.to_s,
          "fragmented" => echoes[3]
        )
      RUBY
      expect(result["returned"]).to eq("Iodine")
      expect(without_drained(result["events"])).to eq(["open :websocket env=nil", "close"])
      request = result["request"]
      expect(request["path"]).to eq("/chat?room=1")
      headers = request["headers"]
      values = ->(name) { headers.select { |k, _| k.casecmp?(name) }.map(&:last) }
      expect(values.call("Host")).to eq(["127.0.0.1:#{@ws_peer.port}"])
      expect(values.call("X-Test")).to eq(["one"])
      expect(values.call("X-Multi")).to eq(%w[a b])
      expect(values.call("Cookie")).to eq(["a=1; b=2"])
      expect(values.call("Sec-WebSocket-Version")).to eq(["13"])
      expect(result["first_encoding"]).to eq("UTF-8")
      # websockets drops a client whose frames are not masked, so these came back only because they were.
      expect(result["echoes"]).to eq([["UTF-8", "hello é".unpack1("H*")], ["ASCII-8BIT", "000162696e"]])
      expect(result["big"]).to be(true), "the 100 KB binary message did not come back whole"
      expect(result["big_encoding"]).to eq("ASCII-8BIT")
      expect(result["fragmented"]).to eq("one two three") # three frames, one on_message
    end

    # As for raw timeouts, a ping may come up to a second late (the C gem's once-a-second review).
    it "sends a ping after ping: 2 quiet seconds (the Python server notes when it answers)" do
      result = run_iodine(<<~RUBY, seconds: 20)
        # Quiet for 3.4 s after the handshake, then asks about the pings, then asks the
        # server to close.
        ws = Recorder.new("ping", on_open: ->(c) { Iodine.run_after(3400) { c.write("stats") } },
                                  on_message: ->(c, d) { c.write("close") if d.include?("pongs") })
        Iodine.connect(url: "ws://127.0.0.1:#{@ws_peer.port}/", handler: ws, ping: 2)
        Recorder.stop_when(15)
        Iodine.start
        puts JSON.generate("events" => ws.events, "stats" => JSON.parse(ws.messages.last.to_s))
      RUBY
      expect(without_drained(result["events"])).to eq(["open :websocket env=nil", "close"])
      pings = result["stats"]["at"]
      expect(pings).not_to be_empty, "no ping in 3.4 quiet seconds with ping: 2"
      expect(pings.first).to be_between(1.8, 3.3)
    end

    it "answers the server's pings with pongs, and closes once when the server sends its Close" do
      result = run_iodine(<<~RUBY, seconds: 15)
        ws = nil
        ws = Recorder.new("keepalive", on_message: ->(c, d) { c.write("close") if d.include?("answered") })
        Iodine.connect(url: "ws://127.0.0.1:#{@ws_peer.port}/keepalive", handler: ws)
        Recorder.stop_when(10)
        Iodine.start
        puts JSON.generate(ws.report)
      RUBY
      expect(without_drained(result["events"])).to eq(["open :websocket env=nil", "close"])
      expect(result["messages"].last).to eq('{"answered": 5}')
      expect(result["closed_at"]).to be < 5
    end

    it "talks to iodine's own WebSocket server (service: :ws, address, port, path): text as UTF-8, binary as binary" do
      server = ServerProcess.new(["-t", "2", app_path("ws_echo.ru")])
      id = unique_id("client")
      result = run_iodine(<<~RUBY, seconds: 20)
        ws = nil
        ws = Recorder.new("own", on_open: ->(c) { c.write("héllo"); c.write("\\x00bin".b) },
                                 on_message: ->(c, _d) { c.close if ws.messages.size == 2 })
        Iodine.connect(service: :ws, address: "127.0.0.1", port: #{server.port}, path: "/?id=#{id}", handler: ws)
        Recorder.stop_when(15)
        Iodine.start
        puts JSON.generate("events" => ws.events, "messages" => ws.messages.map { |m| [m.encoding.to_s, m.b.inspect] })
      RUBY
      expect(without_drained(result["events"])).to eq(["open :websocket env=nil", "close"])
      expect(result["messages"]).to eq([["UTF-8", "héllo".b.inspect], ["ASCII-8BIT", "\x00bin".b.inspect]])
      log = wait_for_events(server.port, id) { |l| l.include?("close") }
      expect(log).to eq(["call :websocket", "open", "message UTF-8 6", "message ASCII-8BIT 4", "close"])
    ensure
      server&.stop
    end

    it "chats with examples/chat.ru: two clients hear each other through its pub/sub" do
      server = ServerProcess.new(["-t", "2", File.join(ROOT, "examples", "chat.ru")])
      result = run_iodine(<<~RUBY, seconds: 20)
        url = "ws://127.0.0.1:#{server.port}/ws?nick="
        alice = bob = nil
        bob = Recorder.new("bob", on_message: lambda { |c, d|
          c.write("hi all") if d == "bob joined"
          c.close if d == "alice left"
        })
        alice = Recorder.new("alice", on_message: lambda { |c, d|
          Iodine.connect(url: url + "bob", handler: bob) if d == "alice joined" # alice is in the room
          c.close if d == "bob: hi all"
        })
        Iodine.connect(url: url + "alice", handler: alice)
        Recorder.stop_when(15)
        Iodine.start
        puts JSON.generate(alice: alice.report, bob: bob.report)
      RUBY
      expect(result["alice"]["messages"]).to eq(["alice joined", "bob joined", "bob: hi all"])
      expect(result["bob"]["messages"]).to eq(["bob joined", "bob: hi all", "alice left"])
      expect(result.values.map { |r| r["encodings"] }).to eq([["UTF-8"], ["UTF-8"]])
      expect(result.values.map { |r| without_drained(r["events"]) }).to eq([["open :websocket env=nil", "close"]] * 2)
    ensure
      server&.stop
    end
  end

  describe "Iodine.connect as a raw client" do
    it "talks to a Python asyncio echo server, however the service is named (none, :raw, \"tcp\", tcp://, raw://)" do
      port = @echo_peer.port
      result = run_iodine(<<~RUBY, seconds: 20)
        forms = {
          "none" => { address: "127.0.0.1", port: #{port} },
          "raw" => { service: :raw, address: "127.0.0.1", port: "#{port}" },
          "tcp" => { service: "tcp", address: "127.0.0.1", port: #{port} },
          "tcp url" => { url: "tcp://127.0.0.1:#{port}" },
          "raw url" => { url: "raw://127.0.0.1:#{port}" }
        }
        recorders = forms.to_h do |name, options|
          payload = "payload of \#{name} " * 20
          r = nil
          r = Recorder.new(name, on_open: ->(c) { c.write(payload) },
                                 on_message: ->(c, _d) { c.close if r.messages.join.bytesize >= payload.bytesize })
          Iodine.connect(**options, handler: r)
          [name, [r, payload]]
        end
        Recorder.stop_when(10)
        Iodine.start
        puts JSON.generate(recorders.transform_values { |r, payload| r.report.merge("echo_ok" => r.messages.join == payload) })
      RUBY
      expect(result.keys).to eq(["none", "raw", "tcp", "tcp url", "raw url"])
      result.each do |name, report|
        expect(report["events"].first(2)).to eq(["open :raw env=nil", "drained"]), name
        expect(report["events"].last).to eq("close"), name
        expect(report["events"].count("close")).to eq(1), name
        expect(report["echo_ok"]).to be(true), "#{name}: #{report['messages'].inspect}"
        expect(report["encodings"]).to eq(["ASCII-8BIT"]), name
      end
    end

    it "talks to a Unix socket server (socat) with address: PATH, port: 0 and url: \"unix://:0/PATH\"" do
      dir = Dir.mktmpdir("iodine-unix-client")
      path = File.join(dir, "echo.sock")
      socat = Process.spawn("socat", "UNIX-LISTEN:#{path},fork", "EXEC:cat", in: File::NULL, out: File::NULL, err: File::NULL)
      deadline = Time.now + 5
      sleep 0.05 until File.socket?(path) || Time.now > deadline
      result = run_iodine(<<~RUBY, seconds: 15)
        forms = { "address" => { address: #{path.inspect}, port: 0 }, "url" => { url: "unix://:0#{path}" } }
        recorders = forms.to_h do |name, options|
          r = nil
          r = Recorder.new(name, on_open: ->(c) { c.write("via \#{name}\\n") },
                                 on_message: ->(c, _d) { c.close if r.messages.join.end_with?("\\n") })
          Iodine.connect(**options, handler: r)
          [name, r]
        end
        Recorder.stop_when(10)
        Iodine.start
        puts JSON.generate(recorders.transform_values { |r| r.report.merge("echo" => r.messages.join) })
      RUBY
      result.each do |name, report|
        expect(report["echo"]).to eq("via #{name}\n")
        expect(report["events"].first(2)).to eq(["open :raw env=nil", "drained"])
        expect(report["events"].last).to eq("close")
      end
    ensure
      if socat
        Process.kill("TERM", socat)
        Process.wait(socat)
      end
      FileUtils.rm_rf(dir) if dir
    end

    it "holds 1,000 connections to a Python asyncio echo server at once, every byte of each distinct payload echoed" do
      result = run_iodine(<<~RUBY, seconds: 60)
        soft, hard = Process.getrlimit(:NOFILE)
        want = hard == Process::RLIM_INFINITY ? 20_000 : [hard, 20_000].min
        Process.setrlimit(:NOFILE, want, hard) if soft < want
        COUNT = 1000
        LOCK = Mutex.new
        STATS = %w[opened closed ok wrong sent received].to_h { |k| [k, 0] }
        OPEN = []

        # Connects; once all COUNT are open, each sends its payload; closes when it came back.
        class Crowd
          def initialize(i)
            @payload = "client \#{i}: " + (i.to_s(36) * (50 + i % 100)) + "\\n"
            @got = +""
          end

          def go(client)
            LOCK.synchronize { STATS["sent"] += @payload.bytesize }
            client.write(@payload)
          end

          def on_open(client)
            all = LOCK.synchronize do
              STATS["opened"] += 1
              OPEN << [self, client]
              if OPEN.size == COUNT
                STATS["fds_when_all_open"] = Dir.children("/proc/self/fd").size
                OPEN.dup
              end
            end
            Iodine.run { all.each { |handler, c| handler.go(c) } } if all
          end

          def on_message(client, data)
            @got << data
            client.close if @got.bytesize >= @payload.bytesize
          end

          def on_close(_client)
            LOCK.synchronize do
              STATS["closed"] += 1
              STATS["received"] += @got.bytesize
              STATS[@got == @payload ? "ok" : "wrong"] += 1
            end
          end
        end

        started = nil
        Iodine.run do
          started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          COUNT.times { |i| Iodine.connect(address: "127.0.0.1", port: #{@echo_peer.port}, handler: Crowd.new(i)) }
        end
        Iodine.run_every(20) { Iodine.stop if LOCK.synchronize { STATS["closed"] } == COUNT }
        Iodine.run_after(45_000) { Iodine.stop }
        Iodine.start
        expected = (0...COUNT).sum { |i| "client \#{i}: ".bytesize + i.to_s(36).bytesize * (50 + i % 100) + 1 }
        puts JSON.generate(STATS.merge("expected" => expected,
                                       "seconds" => (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round(2)))
      RUBY
      expect(result.values_at("opened", "closed", "ok", "wrong")).to eq([1000, 1000, 1000, 0]), result.inspect
      expect(result["sent"]).to eq(result["expected"])
      expect(result["received"]).to eq(result["expected"])
      expect(result["fds_when_all_open"]).to be_between(1000, 20_000)
    end
  end

  describe "Iodine.connect failures" do
    it "end in exactly one on_close and no on_open: refused, unknown host, 404 handshake, not WebSocket, silent server, missing socket" do
      refused = ServerProcess.free_port
      silent = @silent_peer.port
      result = run_iodine(<<~RUBY, seconds: 25)
        cases = {
          "raw refused" => { address: "127.0.0.1", port: #{refused} },
          "ws refused" => { url: "ws://127.0.0.1:#{refused}/" },
          "raw unknown host" => { address: "no-such-host.invalid", port: 80 },
          "ws unknown host" => { url: "ws://no-such-host.invalid:80/" },
          "ws 404" => { url: "ws://127.0.0.1:#{@ws_peer.port}/404" },
          "ws answered by an echo" => { url: "ws://127.0.0.1:#{@echo_peer.port}/" },
          "ws silent, connect_timeout: 1" => { url: "ws://127.0.0.1:#{silent}/", connect_timeout: 1 },
          "ws silent, timeout: 1" => { url: "ws://127.0.0.1:#{silent}/", timeout: 1 },
          "ws silent, ping: 1" => { url: "ws://127.0.0.1:#{silent}/", ping: 1 },
          "raw missing unix socket" => { address: "/tmp/iodine-no-such-\#{Process.pid}.sock", port: 0 }
        }
        started = {}
        recorders = cases.to_h { |name, _| [name, Recorder.new(name)] }
        Iodine.run do
          cases.each do |name, options|
            started[name] = Recorder.elapsed
            Iodine.connect(**options, handler: recorders[name])
          end
        end
        Recorder.stop_when(15)
        Iodine.start
        puts JSON.generate(recorders.to_h { |name, r| [name, { "events" => r.events, "after" => r.report["closed_at"] && (r.report["closed_at"] - started[name]).round(2) }] })
      RUBY
      expect(result.size).to eq(10)
      result.each do |name, report|
        expect(report["events"]).to eq(["close"]), "#{name}: #{report['events'].inspect}"
      end
      result.select { |name, _| name.include?("silent") }.each do |name, report|
        expect(report["after"]).to be_between(0.8, 3.5), "#{name} closed after #{report['after']} s"
      end
    end

    it "stay single: no second on_close and no on_open in the second after the failure" do
      refused = ServerProcess.free_port
      result = run_iodine(<<~RUBY, seconds: 15)
        recorders = [Recorder.new("raw"), Recorder.new("ws"), Recorder.new("404")]
        Iodine.run do
          Iodine.connect(address: "127.0.0.1", port: #{refused}, handler: recorders[0])
          Iodine.connect(url: "ws://127.0.0.1:#{refused}/", handler: recorders[1])
          Iodine.connect(url: "ws://127.0.0.1:#{@ws_peer.port}/404", handler: recorders[2])
        end
        Iodine.run_after(1500) { Iodine.stop }
        Iodine.start
        puts JSON.generate(recorders.map(&:events))
      RUBY
      expect(result).to eq([["close"], ["close"], ["close"]])
    end

    it "raise ArgumentError without a handler (missing, nil, false, true), before anything is opened" do
      result = run_iodine(<<~RUBY, seconds: 10)
        url = "ws://127.0.0.1:#{@ws_peer.port}/"
        tries = {
          "missing" => -> { Iodine.connect(url: url) },
          "nil" => -> { Iodine.connect(url: url, handler: nil) },
          "false" => -> { Iodine.connect(address: "127.0.0.1", port: #{@echo_peer.port}, handler: false) },
          "true" => -> { Iodine.connect(address: "127.0.0.1", port: #{@echo_peer.port}, handler: true) }
        }
        puts JSON.generate(tries.transform_values { |t| t.call && "no error" rescue $!.class.to_s })
      RUBY
      expect(result).to eq("missing" => "ArgumentError", "nil" => "ArgumentError", "false" => "ArgumentError",
                           "true" => "ArgumentError")
    end
  end

  describe "Iodine.attach_fd" do
    it "adopts a dup of one end of a socketpair as a raw connection; the caller keeps its own IO" do
      result = run_iodine(<<~RUBY, seconds: 15)
        mine, peer = UNIXSocket.pair
        out = {}
        h = Recorder.new("pair", on_message: ->(c, d) { d == "bye" ? c.close : c.write("echo:\#{d}") })
        out["returned"] = Iodine.attach_fd(mine.fileno, h).equal?(h)
        Iodine.run do
          Thread.new do
            peer.write("hi")
            out["echo"] = peer.readpartial(100)
            mine.write("straight")
            out["straight"] = peer.readpartial(100)
            peer.write("bye")
          end
        end
        Recorder.stop_when(10)
        Iodine.start
        out["mine closed?"] = mine.closed?
        out["mine a socket?"] = mine.stat.socket?
        puts JSON.generate(out.merge(h.report))
      RUBY
      expect(result.values_at("returned", "echo", "straight")).to eq([true, "echo:hi", "straight"])
      expect(result["events"].first(2)).to eq(["open :raw env=nil", "drained"])
      expect(result["events"].last).to eq("close")
      expect(result["messages"]).to eq(%w[hi bye])
      expect(result["encodings"]).to eq(["ASCII-8BIT"])
      expect(result.values_at("mine closed?", "mine a socket?")).to eq([false, true])
    end

    it "adopts a connected TCPSocket while running; the other end (a Ruby TCPServer) talks to the handler" do
      result = run_iodine(<<~RUBY, seconds: 15)
        server = TCPServer.new("127.0.0.1", 0)
        out = {}
        h = Recorder.new("tcp", on_open: ->(c) { c.write("hello from iodine\\n") },
                                on_message: ->(c, d) { c.write("echo:\#{d}") })
        Iodine.run do
          socket = TCPSocket.new("127.0.0.1", server.addr[1])
          accepted = server.accept
          out["returned"] = Iodine.attach_fd(socket.fileno, h).equal?(h)
          socket.close # the dup is iodine's
          Thread.new do
            out["greeting"] = accepted.gets
            accepted.write("ping")
            out["echo"] = accepted.readpartial(100)
            accepted.close
          end
        end
        Recorder.stop_when(10)
        Iodine.start
        puts JSON.generate(out.merge(h.report))
      RUBY
      expect(result.values_at("returned", "greeting", "echo")).to eq([true, "hello from iodine\n", "echo:ping"])
      expect(result["events"].first).to eq("open :raw env=nil")
      expect(result["events"].last).to eq("close")
      expect(result["events"].count("close")).to eq(1)
    end

    it "raises TypeError for a non-Integer fd, ArgumentError for a nil/true/false handler, IOError for a closed fd, a pipe, a file" do
      result = run_iodine(<<~RUBY, seconds: 15)
        h = Recorder.new("never")
        tries = lambda do
          file = File.open(__FILE__)
          reader, _writer = IO.pipe
          gone, other = UNIXSocket.pair
          closed_fd = gone.fileno
          gone.close
          good = other.fileno
          {
            "String fd" => -> { Iodine.attach_fd(good.to_s, h) }, "Float fd" => -> { Iodine.attach_fd(good.to_f, h) },
            "IO fd" => -> { Iodine.attach_fd(other, h) },
            "nil handler" => -> { Iodine.attach_fd(good, nil) }, "true handler" => -> { Iodine.attach_fd(good, true) },
            "false handler" => -> { Iodine.attach_fd(good, false) },
            "closed fd" => -> { Iodine.attach_fd(closed_fd, h) }, "pipe" => -> { Iodine.attach_fd(reader.fileno, h) },
            "file" => -> { Iodine.attach_fd(file.fileno, h) }
          }.transform_values do |try|
            try.call
            "no error"
          rescue StandardError => e
            "\#{e.class}: \#{e.message}"
          end
        end
        out = { "before start" => tries.call }
        Iodine.run { out["running"] = tries.call }
        Iodine.run_after(300) { Iodine.stop }
        Iodine.start
        puts JSON.generate(out.merge("events" => h.events))
      RUBY
      %w[before\ start running].each do |phase|
        answers = result[phase]
        expect(answers.values_at("String fd", "Float fd", "IO fd").map { |a| a.split(":").first }).to eq(%w[TypeError] * 3), phase
        expect(answers.values_at("nil handler", "true handler", "false handler").map { |a| a.split(":").first })
          .to eq(%w[ArgumentError] * 3), phase
        expect(answers.values_at("closed fd", "pipe", "file")).to eq(["IOError: invalid fd."] * 3), phase
      end
      expect(result["events"]).to eq([])
    end
  end
end
