# frozen_string_literal: true

require "spec_helper"
require "open3"
require "openssl"
require "securerandom"
require "tempfile"
require_relative "../support/realtime"
require_relative "../support/tls_certs"

# TLS on rustls (api.md §2.2 services, §4.2 rack.url_scheme, §8 Iodine::TLS, §10 CLI flags),
# with real clients only: curl, `openssl s_client`, Python's `ssl` and `websockets`, Ruby's
# OpenSSL; and Iodine.connect against our TLS server and against a Ruby OpenSSL server. The
# certificates (a CA, servers for localhost and other.test, clients from the CA and from an
# unrelated CA, an encrypted key, a key that matches nothing) are made with `openssl` by
# spec/support/tls_certs.rb when the specs start; none is checked in.
#
# Most examples share one server process (MAIN_SERVER below, one listener per way of asking
# for TLS); the command-line, reload-by-signal and memory examples start their own.
module TlsHelpers
  RECORDER = File.join(ServerProcess::APPS, "client_recorder.rb")

  # The server of most examples. ARGV[0] is JSON: {"ports" => {name => port}, "certs" =>
  # TlsCerts paths, "public" => static folder, "reload_dir" => folder of cert.pem/key.pem}.
  # A listener that can't be made is logged as "LISTENER name FAILED: …" and the others still
  # serve, so one missing feature fails its own examples only.
  MAIN_SERVER = <<~'RUBY'
    require "iodine"
    require "json"

    CONFIG = JSON.parse(ARGV.fetch(0))
    PORTS = CONFIG.fetch("ports")
    C = CONFIG.fetch("certs")
    Iodine.threads = 2
    Iodine.workers = 1

    # A raw connection answering each message with "TAG:" and the message.
    class Tagged
      def initialize(tag)
        @tag = tag
      end

      def on_message(client, data)
        client.write("#{@tag}:#{data}")
      end
    end

    # A raw connection answering each message in capitals.
    class Upper
      def on_message(client, data)
        client.write("UPPER:#{data.upcase}")
      end
    end

    # The WebSocket echo.
    class WsEcho
      def on_message(client, data)
        client.write(data)
      end
    end

    # A Rack body with to_path (the file the server would send with sendfile on plain TCP).
    class FileBody
      def initialize(path)
        @path = path
      end

      def to_path
        @path
      end

      def each
        File.open(@path, "rb") { |f| while (chunk = f.read(65_536)) do yield chunk end }
      end
    end

    APP = lambda do |env|
      case env["PATH_INFO"]
      when "/ws"
        next [400, {}, ["not a websocket"]] unless env["rack.upgrade?"] == :websocket

        env["rack.upgrade"] = WsEcho.new
        [0, {}, []]
      when "/scheme" then [200, { "content-type" => "text/plain" }, [env["rack.url_scheme"].to_s]]
      when "/hijack" then [200, { "content-type" => "text/plain" }, ["#{env['rack.hijack?'].inspect} #{env.key?('rack.hijack')}"]]
      when "/echo" then [200, { "content-type" => "application/octet-stream" }, [env["rack.input"].read]]
      when "/file" then [200, { "content-type" => "application/octet-stream" }, FileBody.new(File.join(CONFIG["public"], "eight.bin"))]
      when "/reload" then [200, { "content-type" => "text/plain" }, [RELOAD.reload.equal?(RELOAD).to_s]]
      else [200, { "content-type" => "text/plain" }, ["hello from #{env['SERVER_PORT']}"]]
      end
    end

    def listener(name)
      yield
    rescue StandardError, ScriptError => e
      warn "LISTENER #{name} FAILED: #{e.class}: #{e.message}"
    end

    def cert_pair
      [C["server_cert"], C["server_key"]]
    end

    def on(name)
      { address: "127.0.0.1", port: PORTS.fetch(name) }
    end

    # Two certificates chosen by SNI: localhost (positional, the default) and other.test (named).
    listener("main") do
      tls = Iodine::TLS.new("localhost", *cert_pair)
      tls.use_certificate(server_name: "other.test", certificate: C["other_cert"], private_key: C["other_key"])
      Iodine.listen(service: :http, **on("main"), handler: APP, tls: tls, public: CONFIG["public"])
    end
    # mTLS: clients need a certificate from the CA.
    listener("mtls") do
      Iodine.listen(service: :http, **on("mtls"), handler: APP, tls: Iodine::TLS.new("localhost", *cert_pair).trust(C["ca"]))
    end
    listener("https_auto") { Iodine.listen(service: :https, **on("https_auto"), handler: APP) }
    listener("wss_auto") { Iodine.listen(service: :wss, **on("wss_auto"), handler: APP) }
    listener("url") do
      Iodine.listen(url: "https://127.0.0.1:#{PORTS.fetch('url')}", handler: APP, tls: Iodine::TLS.new("localhost", *cert_pair))
    end
    listener("encrypted") do
      tls = Iodine::TLS.new("localhost", C["server_cert"], C["server_key_encrypted"], C["password"])
      Iodine.listen(service: :http, **on("encrypted"), handler: APP, tls: tls)
    end
    listener("named_self_signed") do
      Iodine.listen(service: :http, **on("named_self_signed"), handler: APP, tls: Iodine::TLS.new("selfsigned.test"))
    end
    listener("raw_tls") do
      Iodine.listen(service: :raw, **on("raw_tls"), tls: Iodine::TLS.new("localhost", *cert_pair), handler: -> { Tagged.new("raw") })
    end
    # ALPN on a raw listener: the first protocol added is the fallback.
    listener("alpn") do
      tls = Iodine::TLS.new("localhost", *cert_pair)
      tls.on_protocol("echo/1") { Tagged.new("echo") }.on_protocol("upper/1") { Upper.new }
      Iodine.listen(service: :raw, **on("alpn"), tls: tls, handler: -> { Tagged.new("handler") })
    end
    listener("tls_auto") { Iodine.listen(service: :tls, **on("tls_auto"), handler: -> { Tagged.new("auto") }) }
    listener("timeout") do
      Iodine.listen(service: :http, **on("timeout"), handler: APP, tls: Iodine::TLS.new("localhost", *cert_pair), head_timeout: 2)
    end
    listener("reload") do
      dir = CONFIG.fetch("reload_dir")
      RELOAD = Iodine::TLS.new("localhost", File.join(dir, "cert.pem"), File.join(dir, "key.pem"))
      Iodine.listen(service: :http, **on("reload"), handler: APP, tls: RELOAD)
    end
    # Plain HTTP, last: once it answers, every listener above is bound.
    Iodine.listen(service: :http, **on("control"), handler: APP)
    Iodine.start
  RUBY

  LISTENERS = %w[main mtls https_auto wss_auto url encrypted named_self_signed raw_tls alpn tls_auto timeout reload
                 control].freeze

  # Python `ssl`: one GET over TLS. Request (JSON on stdin): port, servername, path, ca (verify
  # against it; none: no verification), cert/key (a client certificate), max ("TLSv1_2"),
  # alpn (list). Answer: version, alpn, subject (of the verified peer), status, body, error.
  PY_HTTPS = <<~'PY'
    import json, socket, ssl, sys

    req = json.load(sys.stdin)
    out = {"error": None}
    try:
        if req.get("ca"):
            ctx = ssl.create_default_context(cafile=req["ca"])
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if req.get("cert"):
            ctx.load_cert_chain(req["cert"], req["key"])
        if req.get("max"):
            ctx.maximum_version = getattr(ssl.TLSVersion, req["max"])
        # It speaks HTTP/1.1, so it offers only that (offered h2 too, the server picks h2).
        ctx.set_alpn_protocols(req.get("alpn", ["http/1.1"]))
        with socket.create_connection(("127.0.0.1", req["port"]), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=req["servername"]) as tls:
                out["version"] = tls.version()
                out["alpn"] = tls.selected_alpn_protocol()
                cert = tls.getpeercert()
                out["subject"] = dict(x[0] for x in cert.get("subject", ())) if cert else None
                request = f"GET {req['path']} HTTP/1.1\r\nHost: {req['servername']}\r\nConnection: close\r\n\r\n"
                tls.sendall(request.encode())
                data = b""
                length = None
                while True:
                    head, sep, body = data.partition(b"\r\n\r\n")
                    if sep and length is None:
                        for line in head.split(b"\r\n")[1:]:
                            name, _, value = line.partition(b":")
                            if name.strip().lower() == b"content-length":
                                length = int(value.strip())
                    if sep and length is not None and len(body) >= length:
                        break
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                out["status"] = head.split(b"\r\n")[0].decode()
                out["body"] = body.decode("utf-8", "replace")
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
  PY

  # Python `websockets` over TLS. Request: url (wss://…), ca (none: no verification), messages
  # ([{"text": …} or {"hex": …}], each sent then its echo awaited). Answer: tls_version,
  # received ([["text", s] or ["binary", hex]]), error.
  PY_WSS = <<~'PY'
    import asyncio, json, ssl, sys
    import websockets

    async def main(req):
        if req.get("ca"):
            ctx = ssl.create_default_context(cafile=req["ca"])
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        out = {"received": [], "error": None}
        try:
            async with websockets.connect(req["url"], ssl=ctx, open_timeout=5, close_timeout=3,
                                          max_size=2**24, ping_interval=None) as ws:
                out["tls_version"] = ws.transport.get_extra_info("ssl_object").version()
                for m in req["messages"]:
                    await ws.send(bytes.fromhex(m["hex"]) if "hex" in m else m["text"])
                    got = await asyncio.wait_for(ws.recv(), 5)
                    out["received"].append(["text", got] if isinstance(got, str) else ["binary", got.hex()])
        except Exception as e:
            out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))

    asyncio.run(main(json.load(sys.stdin)))
  PY

  # The app of the command-line examples: "<rack.url_scheme> <path>".
  SCHEME_RU = <<~'RUBY'
    run ->(env) { [200, { "content-type" => "text/plain" }, ["#{env['rack.url_scheme']} #{env['PATH_INFO']}"]] }
  RUBY

  # The app of the memory example: GET /big streams 256 MiB through `each`, 64 KiB at a time.
  BIG_RU = <<~'RUBY'
    CHUNK = ("x" * 65_536).freeze
    TOTAL = 256 * 1024 * 1024

    # Yields TOTAL bytes.
    class Big
      def each
        (TOTAL / CHUNK.bytesize).times { yield CHUNK }
      end
    end

    run lambda { |env|
      if env["PATH_INFO"] == "/big"
        [200, { "content-type" => "application/octet-stream", "content-length" => TOTAL.to_s }, Big.new]
      else
        [200, { "content-type" => "text/plain" }, ["ok"]]
      end
    }
  RUBY

  module_function

  def certs
    TlsCerts.paths
  end

  # A file named `name` holding `text`, in the certificates' folder (removed at exit).
  def support_file(name, text)
    path = File.join(certs.dir, name)
    File.write(path, text) unless File.exist?(path)
    path
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def tool?(name)
    system("sh", "-c", "command -v #{name}", out: File::NULL, err: File::NULL)
  end

  def python_websockets?
    RealtimeHelpers.python
    true
  rescue RuntimeError
    false
  end

  # [stdout (binary), stderr, Process::Status, timed_out] of `command` (see run_command).
  def run_cmd(*command, input: "", seconds: 15)
    run_command(*command, input: input, seconds: seconds).values_at(0, 1, 2, 4)
  end

  # Runs the Python `script` with `request` as JSON on its stdin; the JSON of its last line.
  # `websockets: true` takes the Python that has the websockets package.
  def python(script, request, websockets: false, seconds: 30)
    interpreter = websockets ? RealtimeHelpers.python : "python3"
    out, err, status, timed_out = run_cmd(interpreter, script, input: JSON.generate(request), seconds: seconds)
    raise "#{File.basename(script)} ran over #{seconds} s: #{err}" if timed_out
    raise "#{File.basename(script)} failed (#{status}): #{err}" unless status.success?

    JSON.parse(out.lines.last.to_s)
  end

  # `curl -sS` with a 10 s limit; [stdout (binary), stderr, Process::Status].
  def curl(*args)
    out, err, status, = run_cmd("curl", "-sS", "--max-time", "10", *args, seconds: 20)
    [out, err, status]
  end

  # curl's arguments for https://HOST:PORT/PATH, HOST resolved to 127.0.0.1.
  def https(port, path = "/", host: "localhost")
    ["--resolve", "#{host}:#{port}:127.0.0.1", "https://#{host}:#{port}#{path}"]
  end

  # `openssl s_client` to 127.0.0.1:PORT with `args`, `input` on its stdin then EOF; stdout
  # and stderr together.
  def s_client(port, *args, input: "", seconds: 10)
    out, err, _status, = run_cmd("openssl", "s_client", "-connect", "127.0.0.1:#{port}", *args, input: input, seconds: seconds)
    out.force_encoding(Encoding::UTF_8).scrub + err
  end

  # Whether s_client's output shows a finished handshake.
  def s_client_connected?(output)
    output.match?(/^New, TLSv1\.[0-3], Cipher is /) && !output.include?("Cipher is (NONE)")
  end

  # A Ruby OpenSSL client connected (handshake done within `seconds`) to 127.0.0.1:PORT; with
  # `ca` it verifies the server against it and the host name `servername`.
  def tls_socket(port, servername: "localhost", ca: nil, alpn: nil, cert: nil, key: nil, max_version: nil, seconds: 5)
    ctx = OpenSSL::SSL::SSLContext.new
    if ca
      ctx.ca_file = ca
      ctx.verify_mode = OpenSSL::SSL::VERIFY_PEER
      ctx.verify_hostname = true
    else
      ctx.verify_mode = OpenSSL::SSL::VERIFY_NONE
    end
    ctx.alpn_protocols = alpn if alpn
    ctx.cert = OpenSSL::X509::Certificate.new(File.read(cert)) if cert
    ctx.key = OpenSSL::PKey.read(File.read(key)) if key
    ctx.max_version = max_version if max_version
    tcp = Socket.tcp("127.0.0.1", port, connect_timeout: seconds)
    ssl = OpenSSL::SSL::SSLSocket.new(tcp, ctx)
    ssl.hostname = servername if servername
    ssl.sync_close = true
    ssl_handshake(ssl, seconds)
    ssl
  rescue StandardError
    ssl ? ssl.to_io.close : tcp&.close
    raise
  end

  def ssl_handshake(ssl, seconds)
    deadline = now + seconds
    loop do
      ssl.connect_nonblock
      return
    rescue IO::WaitReadable, IO::WaitWritable => e
      left = deadline - now
      raise Timeout::Error, "TLS handshake not finished in #{seconds} s" if left <= 0

      e.is_a?(IO::WaitReadable) ? IO.select([ssl.to_io], nil, nil, left) : IO.select(nil, [ssl.to_io], nil, left)
    end
  end

  # Reads `ssl` until the peer closes, `seconds` pass or the block (given the bytes so far)
  # is true; returns [bytes, closed_by_peer].
  def read_tls(ssl, seconds)
    out = +"".b
    deadline = now + seconds
    loop do
      return [out, false] if block_given? && yield(out)

      left = deadline - now
      return [out, false] if left <= 0

      begin
        out << ssl.read_nonblock(65_536)
      rescue IO::WaitReadable
        IO.select([ssl.to_io], nil, nil, left)
      rescue IO::WaitWritable
        IO.select(nil, [ssl.to_io], nil, left)
      rescue EOFError, IOError, SystemCallError, OpenSSL::SSL::SSLError
        return [out, true]
      end
    end
  end

  # GET `path` over a Ruby OpenSSL connection (Connection: close); [status line, body].
  def tls_get(port, path, **options)
    ssl = tls_socket(port, **options)
    ssl.write("GET #{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    raw, = read_tls(ssl, 10)
    head, body = raw.split("\r\n\r\n", 2)
    [head.to_s.lines.first.to_s.strip, body.to_s]
  ensure
    ssl&.close rescue nil # rubocop:disable Style/RescueModifier
  end

  # Writes `line` on a raw TLS connection and reads until `line`'s answer ends with "\n".
  def tls_exchange(port, line, **options)
    ssl = tls_socket(port, **options)
    ssl.write(line)
    read_tls(ssl, 5) { |got| got.end_with?("\n") }.first
  ensure
    ssl&.close rescue nil # rubocop:disable Style/RescueModifier
  end

  # The certificate the server at PORT presents for `servername` (nil: no SNI).
  def peer_cert(port, servername: "localhost")
    ssl = tls_socket(port, servername: servername)
    ssl.peer_cert
  ensure
    ssl&.close rescue nil # rubocop:disable Style/RescueModifier
  end

  def common_name(cert)
    cert.subject.to_a.find { |name, _, _| name == "CN" }&.[](1)
  end

  def subject_alt_names(cert)
    cert.extensions.find { |e| e.oid == "subjectAltName" }&.value.to_s
  end

  # Replaces DIR/cert.pem and DIR/key.pem (by rename: a reader never sees half a file).
  def install_pair(dir, cert_text, key_text)
    { "cert.pem" => cert_text, "key.pem" => key_text }.each do |name, text|
      tmp = File.join(dir, ".#{name}.#{SecureRandom.hex(4)}")
      File.write(tmp, text)
      File.rename(tmp, File.join(dir, name))
    end
  end

  def rss_kib(pid)
    File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)/, 1].to_i
  end

  # Runs `body` (after `require client_recorder.rb`) in a new Ruby, killed after `seconds`;
  # the JSON of its last stdout line.
  def run_iodine_client(body, seconds: 30)
    Tempfile.create(["iodine-tls-client", ".rb"]) do |file|
      file.write("require #{RECORDER.inspect}\n#{body}")
      file.flush
      out, err, status, timed_out = run_cmd(RbConfig.ruby, "-I#{ROOT}/lib", file.path, seconds: seconds)
      raise "the iodine client script ran over #{seconds} s:\n#{err}" if timed_out

      begin
        JSON.parse(out.lines.last.to_s)
      rescue JSON::ParserError
        raise "the iodine client script printed no result (#{status}):\n#{out}\n#{err}"
      end
    end
  end
end

# A TLS server made with Ruby's OpenSSL (not iodine), in this process: it records the SNI
# names and ALPN lists it is offered and the client certificates it sees; a connection whose
# first bytes are "GET " gets "HTTP/1.1 200" + "ruby", any other gets each chunk back as
# "ruby:" + chunk.
class RubyTlsServer
  attr_reader :port

  def initialize(cert:, key:, chain: [], ca: nil, old_protocols: false)
    @lock = Mutex.new
    @seen = { "names" => [], "alpn" => [], "clients" => [], "errors" => [] }
    @ctx = OpenSSL::SSL::SSLContext.new
    @ctx.cert = OpenSSL::X509::Certificate.new(File.read(cert))
    @ctx.key = OpenSSL::PKey.read(File.read(key))
    @ctx.extra_chain_cert = chain.map { |c| OpenSSL::X509::Certificate.new(File.read(c)) } unless chain.empty?
    if ca
      @ctx.ca_file = ca
      @ctx.verify_mode = OpenSSL::SSL::VERIFY_PEER | OpenSSL::SSL::VERIFY_FAIL_IF_NO_PEER_CERT
    end
    if old_protocols
      @ctx.security_level = 0
      @ctx.min_version = OpenSSL::SSL::TLS1_VERSION
      @ctx.ciphers = "DEFAULT@SECLEVEL=0"
    end
    @ctx.servername_cb = lambda do |args|
      note("names", args[1])
      nil
    end
    @ctx.alpn_select_cb = lambda do |offered|
      note("alpn", offered)
      offered.include?("http/1.1") ? "http/1.1" : offered.first
    end
    @tcp = TCPServer.new("127.0.0.1", 0)
    @port = @tcp.addr[1]
    @thread = Thread.new { serve }
  end

  def seen
    @lock.synchronize { Marshal.load(Marshal.dump(@seen)) }
  end

  def stop
    @tcp.close
    @thread.join(2)
  end

  private

  def note(kind, value)
    @lock.synchronize { @seen[kind] << value }
  end

  def serve
    loop do
      socket = @tcp.accept
      Thread.new(socket) { |s| handle(s) }
    end
  rescue IOError, SystemCallError
    nil
  end

  def handle(tcp)
    ssl = OpenSSL::SSL::SSLSocket.new(tcp, @ctx)
    ssl.sync_close = true
    deadline = TlsHelpers.now + 5
    begin
      ssl.accept_nonblock
    rescue IO::WaitReadable, IO::WaitWritable => e
      raise Timeout::Error, "handshake not finished in 5 s" if TlsHelpers.now > deadline

      e.is_a?(IO::WaitReadable) ? IO.select([tcp], nil, nil, 0.1) : IO.select(nil, [tcp], nil, 0.1)
      retry
    end
    note("clients", ssl.peer_cert && TlsHelpers.common_name(ssl.peer_cert))
    data, closed = TlsHelpers.read_tls(ssl, 10) { |got| !got.empty? }
    if data.start_with?("GET ")
      rest, = TlsHelpers.read_tls(ssl, 5) { |got| (data + got).include?("\r\n\r\n") } unless data.include?("\r\n\r\n")
      data << rest.to_s
      ssl.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nruby")
      return
    end
    until data.empty?
      ssl.write("ruby:#{data}")
      break if closed

      data, closed = TlsHelpers.read_tls(ssl, 30) { |got| !got.empty? }
    end
  rescue StandardError => e
    note("errors", "#{e.class}: #{e.message}")
  ensure
    ssl ? (ssl.close rescue nil) : tcp.close # rubocop:disable Style/RescueModifier
  end
end

RSpec.describe "TLS", skip: (TlsCerts.openssl? ? false : "the openssl command is not installed (certificates are made with it)") do
  include RealtimeHelpers
  include ScriptRunner
  include TlsHelpers

  let(:certs) { TlsCerts.paths }

  def need(tool)
    skip "#{tool} is not installed" unless TlsHelpers.tool?(tool)
  end

  def need_python
    skip "python3 is not installed" unless TlsHelpers.tool?("python3")
  end

  def need_python_websockets
    skip "no python3 with the websockets package (apt-get install python3-websockets)" unless TlsHelpers.python_websockets?
  end

  describe "the test certificates (checked against Ruby's OpenSSL and openssl s_server, without iodine)" do
    it "verify with curl and s_client by name and by IP, the fullchain through its intermediate, SNI by name" do
      need("curl")
      server = RubyTlsServer.new(cert: certs.server_cert, key: certs.server_key)
      chain = RubyTlsServer.new(cert: certs.chain_cert, key: certs.chain_key, chain: [certs.intermediate])
      other = RubyTlsServer.new(cert: certs.other_cert, key: certs.other_key)
      out, err, status = curl("--cacert", certs.ca, *https(server.port))
      expect([status.success?, out]).to eq([true, "ruby"]), err
      out, err, status = curl("--cacert", certs.ca, "https://127.0.0.1:#{server.port}/")
      expect([status.success?, out]).to eq([true, "ruby"]), err
      out, err, status = curl("--cacert", certs.ca, *https(chain.port))
      expect([status.success?, out]).to eq([true, "ruby"]), err
      out, err, status = curl("--cacert", certs.ca, *https(other.port, host: "other.test"))
      expect([status.success?, out]).to eq([true, "ruby"]), err
      _out, _err, status = curl("--cacert", certs.rogue_ca, *https(server.port))
      expect(status.exitstatus).to eq(60) # not verified against another CA
      brief = s_client(server.port, "-brief", "-servername", "localhost", "-CAfile", certs.ca, "-verify_return_error")
      expect(brief).to include("Verification: OK").and include("Peer certificate: CN = localhost")
      expect(other.seen["names"]).to include("other.test")
    ensure
      [server, chain, other].each { |s| s&.stop }
    end

    it "make mTLS work: a server trusting the CA takes client.pem and refuses no certificate or the rogue CA's" do
      need("curl")
      server = RubyTlsServer.new(cert: certs.server_cert, key: certs.server_key, ca: certs.ca)
      out, err, status = curl("--cacert", certs.ca, "--cert", certs.client_cert, "--key", certs.client_key, *https(server.port))
      expect([status.success?, out]).to eq([true, "ruby"]), err
      out, _err, status = curl("--cacert", certs.ca, *https(server.port))
      expect([status.success?, out]).to eq([false, ""])
      out, _err, status = curl("--cacert", certs.ca, "--cert", certs.rogue_client_cert, "--key", certs.rogue_client_key,
                               *https(server.port))
      expect([status.success?, out]).to eq([false, ""])
      expect(server.seen["clients"]).to eq(["iodine-spec-client"])
    ensure
      server&.stop
    end

    it "have an encrypted key that opens only with the password, and a key that matches no certificate" do
      _out, _err, status, = run_cmd("openssl", "pkey", "-in", certs.server_key_encrypted, "-passin", "pass:#{certs.password}", "-noout")
      expect(status.success?).to be(true)
      _out, _err, status, = run_cmd("openssl", "pkey", "-in", certs.server_key_encrypted, "-passin", "pass:wrong", "-noout")
      expect(status.success?).to be(false)
      expect(File.read(certs.server_key_encrypted)).to start_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
      public_der = ->(key) { OpenSSL::PKey.read(File.read(key), certs.password).public_to_der }
      server = OpenSSL::X509::Certificate.new(File.read(certs.server_cert))
      expect(public_der.call(certs.server_key_encrypted)).to eq(server.public_key.public_to_der)
      expect(public_der.call(certs.server_key_pkcs1)).to eq(server.public_key.public_to_der)
      expect(public_der.call(certs.mismatch_key)).not_to eq(server.public_key.public_to_der)
    end

    it "let the renegotiation probe see a second handshake where a server allows one (openssl s_server -client_renegotiation)" do
      port = ServerProcess.free_port
      pid = nil
      reader, writer = IO.pipe # s_server's stdin: open until the end, or it quits
      # OpenSSL 3 refuses client-initiated renegotiation unless told; 1.1.1 allows it (and lacks the flag).
      help_out, help_err, = run_cmd("openssl", "s_server", "-help")
      allow = (help_out + help_err).include?("client_renegotiation") ? ["-client_renegotiation"] : []
      pid = Process.spawn("openssl", "s_server", *allow, "-accept", port.to_s, "-cert", certs.server_cert,
                          "-key", certs.server_key, in: reader, out: File::NULL, err: File::NULL)
      reader.close
      deadline = TlsHelpers.now + 5
      begin
        TCPSocket.new("127.0.0.1", port).close
      rescue SystemCallError
        raise "openssl s_server did not listen" if TlsHelpers.now > deadline

        sleep 0.05
        retry
      end
      expect(renegotiation_probe(port)[:handshakes]).to eq(2)
    ensure
      writer&.close
      if pid
        Process.kill("KILL", pid) rescue nil # rubocop:disable Style/RescueModifier
        Process.wait(pid)
      end
    end
  end

  # The lines `server` logged after its first `before` ones, once one of them mentions an
  # error (or 3 s passed), and half a second more (for a second line that shouldn't be).
  def log_lines_after(server, before)
    eventually(3) { server.log.lines.drop(before).grep(/error/i).any? }
    sleep 0.5
    server.log.lines.drop(before)
  end

  # `openssl s_client -tls1_2` to PORT, then "R" (renegotiate), then a request. Returns
  # {handshakes: how many times the server's certificate was verified, output:}.
  def renegotiation_probe(port)
    Open3.popen3("openssl", "s_client", "-connect", "127.0.0.1:#{port}", "-servername", "localhost", "-tls1_2",
                 "-CAfile", certs.ca, "-crlf") do |stdin, stdout, stderr, wait|
      out = Thread.new { stdout.read }
      err = Thread.new { stderr.read }
      begin
        sleep 1
        stdin.write("R\n")
        stdin.flush
        sleep 1
        stdin.write("GET / HTTP/1.1\nHost: localhost\n\n")
        stdin.flush
        sleep 1
        stdin.close
      rescue Errno::EPIPE, IOError
        nil
      end
      unless wait.join(8)
        Process.kill("KILL", wait.pid)
        wait.join
      end
      output = out.value + err.value
      { handshakes: output.scan(/^depth=0 /).size, output: output }
    end
  end

  describe "listeners (one server: Iodine.listen with tls:, service: :https/:wss/:tls/:raw, url:)" do
    before(:all) do
      c = TlsCerts.paths
      @public = Dir.mktmpdir("iodine-tls-public")
      File.binwrite(File.join(@public, "eight.bin"), Random.new(8).bytes(8 * 1024 * 1024))
      File.write(File.join(@public, "small.txt"), "small file")
      @reload_dir = Dir.mktmpdir("iodine-tls-reload")
      TlsHelpers.install_pair(@reload_dir, File.read(c.server_cert), File.read(c.server_key))
      @ports = TlsHelpers::LISTENERS.to_h { |name| [name, ServerProcess.free_port] }
      config = { "ports" => @ports, "certs" => c.to_h.transform_keys(&:to_s), "public" => @public, "reload_dir" => @reload_dir }
      script = TlsHelpers.support_file("tls_main_server.rb", TlsHelpers::MAIN_SERVER)
      @server = ServerProcess.new(nil, script: [script, JSON.generate(config)], port: @ports["control"])
    end

    after(:all) do
      @server&.stop
      FileUtils.rm_rf(@public) if @public
      FileUtils.rm_rf(@reload_dir) if @reload_dir
    end

    # The port of listener `name`, or the reason the server could not make it.
    def port(name)
      failed = @server.log[/^LISTENER #{name} FAILED.*$/]
      raise "the #{name} listener could not be made: #{failed}" if failed

      @ports.fetch(name)
    end

    def expect_tls_serving(name = "main")
      expect(@server.exited?).to be(false), @server.log
      expect(tls_get(port(name), "/", ca: certs.ca)).to eq(["HTTP/1.1 200 OK", "hello from #{port(name)}"])
    end

    describe "HTTPS with certificate files" do
      it "is verified by curl --cacert by name and by IP address, and rack.url_scheme is https (http on the plain listener)" do
        need("curl")
        out, err, status = curl("--cacert", certs.ca, *https(port("main")))
        expect([status.success?, out]).to eq([true, "hello from #{port('main')}"]), err
        out, err, status = curl("--cacert", certs.ca, "https://127.0.0.1:#{port('main')}/scheme")
        expect([status.success?, out]).to eq([true, "https"]), err
        expect(http_get(port("control"), "/scheme").body).to eq("http")
      end

      it "offers no rack.hijack over TLS (the socket carries records), and does on the plain listener" do
        need("curl")
        out, err, status = curl("--cacert", certs.ca, "https://127.0.0.1:#{port('main')}/hijack")
        expect([status.success?, out]).to eq([true, "false false"]), err
        expect(http_get(port("control"), "/hijack").body).to eq("true true")
      end

      it "speaks TLS 1.2 and TLS 1.3 (curl --tlsv1.2 --tls-max 1.2, --tlsv1.3) and offers h2 and http/1.1 by ALPN" do
        need("curl")
        { %w[--tlsv1.2 --tls-max 1.2] => "TLSv1.2", %w[--tlsv1.3] => "TLSv1.3" }.each do |flags, version|
          out, err, status = curl("-v", "--cacert", certs.ca, *flags, *https(port("main"), "/scheme"))
          expect([status.success?, out]).to eq([true, "https"]), err
          expect(err).to match(/SSL connection using #{Regexp.escape(version)} /)
          expect(err).to include("ALPN: server accepted h2")
          out, err, status = curl("-v", "--http1.1", "--cacert", certs.ca, *flags, *https(port("main"), "/scheme"))
          expect([status.success?, out]).to eq([true, "https"]), err
          expect(err).to include("ALPN: server accepted http/1.1")
        end
      end

      it "answers openssl s_client's ALPN h2,http/1.1 with h2 and http/1.1 alone with http/1.1, over TLS 1.2 and 1.3" do
        need("openssl")
        %w[-tls1_2 -tls1_3].each do |version|
          { "h2,http/1.1" => "h2", "http/1.1" => "http/1.1", "http/1.1,h2" => "h2" }.each do |offered, agreed|
            output = s_client(port("main"), version, "-servername", "localhost", "-alpn", offered, "-CAfile", certs.ca)
            expect(s_client_connected?(output)).to be(true), output
            expect(output).to include("ALPN protocol: #{agreed}")
            expect(output).to include("Verify return code: 0 (ok)")
          end
        end
      end

      it "refuses TLS 1.1 and 1.0 (openssl s_client, which speaks them to a Ruby server that allows them)" do
        need("openssl")
        old = RubyTlsServer.new(cert: certs.server_cert, key: certs.server_key, old_protocols: true)
        %w[-tls1_1 -tls1].each do |version|
          probe = s_client(old.port, version, "-cipher", "DEFAULT@SECLEVEL=0")
          skip "this openssl cannot speak #{version} even to a server that allows it" unless s_client_connected?(probe)

          output = s_client(port("main"), version, "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost")
          expect(s_client_connected?(output)).to be(false), output
        end
        expect_tls_serving
      ensure
        old&.stop
      end

      it "is spoken to by Python's ssl: TLS 1.3 by default, 1.2 when capped, ALPN http/1.1, the verified subject" do
        need_python
        result = python(support_file("https_client.py", TlsHelpers::PY_HTTPS),
                        { port: port("main"), servername: "localhost", path: "/scheme", ca: certs.ca })
        expect(result).to include("error" => nil, "version" => "TLSv1.3", "alpn" => "http/1.1",
                                  "status" => "HTTP/1.1 200 OK", "body" => "https")
        expect(result["subject"]).to eq("commonName" => "localhost")
        result = python(support_file("https_client.py", TlsHelpers::PY_HTTPS),
                        { port: port("main"), servername: "localhost", path: "/", ca: certs.ca, max: "TLSv1_2" })
        expect(result).to include("error" => nil, "version" => "TLSv1.2", "body" => "hello from #{port('main')}")
      end

      it "is spoken to by Ruby's OpenSSL (verifying the CA and the host name), TLS 1.2 and 1.3" do
        [nil, OpenSSL::SSL::TLS1_2_VERSION].each do |max|
          ssl = tls_socket(port("main"), ca: certs.ca, max_version: max)
          expect(ssl.ssl_version).to eq(max ? "TLSv1.2" : "TLSv1.3")
          ssl.write("GET /scheme HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
          raw, = read_tls(ssl, 10)
          expect(raw).to start_with("HTTP/1.1 200").and end_with("\r\n\r\nhttps")
        ensure
          ssl&.close
        end
      end

      it "keeps the connection alive between requests and takes a 5 MiB upload byte for byte" do
        need("curl")
        upload = File.join(certs.dir, "upload-#{SecureRandom.hex(4)}.bin")
        File.binwrite(upload, Random.new(5).bytes(5 * 1024 * 1024))
        url = "https://localhost:#{port('main')}"
        out, err, status = curl("-v", "--cacert", certs.ca, "--resolve", "localhost:#{port('main')}:127.0.0.1",
                                "#{url}/scheme", "#{url}/")
        expect([status.success?, out]).to eq([true, "httpshello from #{port('main')}"]), err
        expect(err).to match(/Re-using existing connection/i)
        out, err, status = curl("--cacert", certs.ca, "--data-binary", "@#{upload}", "-H", "Content-Type: application/octet-stream",
                                *https(port("main"), "/echo"))
        expect(status.success?).to be(true), err
        expect(out.bytesize).to eq(File.size(upload))
        expect(out == File.binread(upload)).to be(true), "the echoed upload differs"
      ensure
        File.delete(upload) if upload && File.exist?(upload)
      end

      it "serves 20 clients at once" do
        need("curl")
        main = port("main")
        results = Array.new(20) do
          Thread.new { curl("--cacert", certs.ca, *https(main)) }
        end.map(&:value)
        results.each { |out, err, status| expect([status.success?, out]).to eq([true, "hello from #{main}"]), err }
      end

      it "opens an encrypted PKCS#8 key with its password (TLS.new(name, cert, key, password))" do
        need("curl")
        out, err, status = curl("--cacert", certs.ca, *https(port("encrypted")))
        expect([status.success?, out]).to eq([true, "hello from #{port('encrypted')}"]), err
      end

      it "listens on url: \"https://127.0.0.1:PORT\" with the tls: given" do
        need("curl")
        out, err, status = curl("--cacert", certs.ca, *https(port("url"), "/scheme"))
        expect([status.success?, out]).to eq([true, "https"]), err
      end
    end

    describe "SNI (two certificates on one listener)" do
      it "presents other.test's certificate to clients asking for other.test (curl, s_client, Python, Ruby)" do
        need("curl")
        need("python3")
        out, err, status = curl("--cacert", certs.ca, *https(port("main"), "/scheme", host: "other.test"))
        expect([status.success?, out]).to eq([true, "https"]), err
        output = s_client(port("main"), "-brief", "-servername", "other.test", "-CAfile", certs.ca, "-verify_return_error")
        expect(output).to include("Peer certificate: CN = other.test").and include("Verification: OK")
        result = python(support_file("https_client.py", TlsHelpers::PY_HTTPS),
                        { port: port("main"), servername: "other.test", path: "/", ca: certs.ca })
        expect(result).to include("error" => nil, "subject" => { "commonName" => "other.test" })
        expect(common_name(peer_cert(port("main"), servername: "other.test"))).to eq("other.test")
      end

      it "presents the first certificate (localhost) for localhost, for an unknown name and without SNI" do
        need("openssl")
        expect(common_name(peer_cert(port("main"), servername: "localhost"))).to eq("localhost")
        expect(common_name(peer_cert(port("main"), servername: "unknown.test"))).to eq("localhost")
        expect(common_name(peer_cert(port("main"), servername: nil))).to eq("localhost")
        output = s_client(port("main"), "-brief", "-noservername", "-CAfile", certs.ca, "-verify_return_error")
        expect(output).to include("Peer certificate: CN = localhost").and include("Verification: OK")
      end
    end

    describe "self-signed certificates" do
      it "service: :https without tls: serves with a self-signed certificate (curl -k works, curl without -k does not)" do
        need("curl")
        out, err, status = curl("-k", *https(port("https_auto"), "/scheme"))
        expect([status.success?, out]).to eq([true, "https"]), err
        _out, _err, status = curl(*https(port("https_auto")))
        expect(status.exitstatus).to eq(60)
        _out, _err, status = curl("--cacert", certs.ca, *https(port("https_auto")))
        expect(status.exitstatus).to eq(60)
        cert = peer_cert(port("https_auto"))
        expect(cert.issuer.to_s).to eq(cert.subject.to_s)
      end

      it "TLS.new(name) alone is a self-signed ECDSA P-256 certificate whose CN and SAN are that name" do
        cert = peer_cert(port("named_self_signed"), servername: "selfsigned.test")
        expect(common_name(cert)).to eq("selfsigned.test")
        expect(subject_alt_names(cert)).to include("DNS:selfsigned.test")
        expect(cert.issuer.to_s).to eq(cert.subject.to_s)
        expect(cert.public_key).to be_a(OpenSSL::PKey::EC)
        expect(cert.public_key.group.curve_name).to eq("prime256v1")
        expect(cert.verify(cert.public_key)).to be(true)
        status, body = tls_get(port("named_self_signed"), "/scheme", servername: "selfsigned.test")
        expect([status, body]).to eq(["HTTP/1.1 200 OK", "https"])
      end

      it "service: :wss without tls: carries WebSocket (Python websockets without verification), and fails verification against the CA" do
        need_python_websockets
        result = python(support_file("wss_client.py", TlsHelpers::PY_WSS),
                        { url: "wss://localhost:#{port('wss_auto')}/ws", messages: [{ text: "over wss" }] }, websockets: true)
        expect(result).to include("error" => nil, "received" => [["text", "over wss"]])
        result = python(support_file("wss_client.py", TlsHelpers::PY_WSS),
                        { url: "wss://localhost:#{port('wss_auto')}/ws", ca: certs.ca, messages: [{ text: "x" }] },
                        websockets: true)
        expect(result["error"]).to match(/certificate verify failed/i)
      end
    end

    describe "WebSocket over TLS" do
      it "echoes text and a 100 KiB binary message to Python websockets, which verifies the CA (wss://localhost)" do
        need_python_websockets
        big = Random.new(100).bytes(100 * 1024)
        result = python(support_file("wss_client.py", TlsHelpers::PY_WSS),
                        { url: "wss://localhost:#{port('main')}/ws", ca: certs.ca,
                          messages: [{ text: "héllo over tls" }, { hex: big.unpack1("H*") }] }, websockets: true)
        expect(result["error"]).to be_nil
        expect(result["tls_version"]).to eq("TLSv1.3")
        expect(result["received"].first).to eq(["text", "héllo over tls"])
        expect(result["received"].last).to eq(["binary", big.unpack1("H*")])
      end
    end

    describe "mTLS (trust: the CA)" do
      it "serves a client with a certificate from the CA (TLS 1.2 and 1.3)" do
        need("curl")
        [[], %w[--tlsv1.2 --tls-max 1.2]].each do |flags|
          out, err, status = curl("--cacert", certs.ca, "--cert", certs.client_cert, "--key", certs.client_key, *flags,
                                  *https(port("mtls")))
          expect([status.success?, out]).to eq([true, "hello from #{port('mtls')}"]), err
        end
      end

      it "refuses a client without a certificate and one whose certificate comes from another CA (TLS 1.2 and 1.3)" do
        need("curl")
        [[], %w[--tlsv1.2 --tls-max 1.2]].each do |flags|
          out, err, status = curl("--cacert", certs.ca, *flags, *https(port("mtls")))
          expect([status.success?, out]).to eq([false, ""]), "no certificate #{flags}: #{err}"
          out, err, status = curl("--cacert", certs.ca, "--cert", certs.rogue_client_cert, "--key", certs.rogue_client_key,
                                  *flags, *https(port("mtls")))
          expect([status.success?, out]).to eq([false, ""]), "rogue certificate #{flags}: #{err}"
        end
        out, err, status = curl("--cacert", certs.ca, "--cert", certs.client_cert, "--key", certs.client_key, *https(port("mtls")))
        expect([status.success?, out]).to eq([true, "hello from #{port('mtls')}"]), err
      end
    end

    describe "raw TLS listeners" do
      it "service: :raw with tls: echoes through the factory's handler (Ruby OpenSSL, verified)" do
        expect(tls_exchange(port("raw_tls"), "ping\n", ca: certs.ca)).to eq("raw:ping\n")
      end

      it "service: :tls without tls: is raw over a self-signed certificate" do
        expect(tls_exchange(port("tls_auto"), "ping\n")).to eq("auto:ping\n")
        cert = peer_cert(port("tls_auto"))
        expect(cert.issuer.to_s).to eq(cert.subject.to_s)
      end

      it "on_protocol picks the handler by ALPN; no ALPN, or none of ours, gets the first protocol's" do
        { ["upper/1"] => "UPPER:PING\n", ["echo/1"] => "echo:ping\n", ["nope/1", "upper/1"] => "UPPER:PING\n",
          nil => "echo:ping\n", ["nope/1"] => "echo:ping\n" }.each do |offered, answer|
          expect(tls_exchange(port("alpn"), "ping\n", ca: certs.ca, alpn: offered)).to eq(answer), "ALPN #{offered.inspect}"
        end
      end

      it "tells openssl s_client the protocol chosen by ALPN" do
        need("openssl")
        output = s_client(port("alpn"), "-servername", "localhost", "-alpn", "upper/1", "-CAfile", certs.ca)
        expect(output).to include("ALPN protocol: upper/1")
        output = s_client(port("alpn"), "-servername", "localhost", "-alpn", "nope/1", "-CAfile", certs.ca)
        expect(s_client_connected?(output)).to be(true), output
        expect(output).to include("No ALPN negotiated")
      end
    end

    describe "static files and file bodies over TLS (no sendfile)" do
      it "serves an 8 MiB file byte for byte, a range of it, a small cached file, and an app's to_path body" do
        need("curl")
        expected = File.binread(File.join(@public, "eight.bin"))
        out, err, status = curl("--cacert", certs.ca, *https(port("main"), "/eight.bin"))
        expect(status.success?).to be(true), err
        expect(out.bytesize).to eq(expected.bytesize)
        expect(out == expected).to be(true), "the 8 MiB file differs"
        out, err, status = curl("--cacert", certs.ca, "-r", "1000000-2999999", "-w", "\n%{http_code}",
                                *https(port("main"), "/eight.bin"))
        expect(status.success?).to be(true), err
        body, code = out.b.rpartition("\n").values_at(0, 2)
        expect(code).to eq("206")
        expect(body == expected.byteslice(1_000_000, 2_000_000)).to be(true), "the range differs"
        2.times do
          out, err, status = curl("--cacert", certs.ca, *https(port("main"), "/small.txt"))
          expect([status.success?, out]).to eq([true, "small file"]), err
        end
        out, err, status = curl("--cacert", certs.ca, *https(port("main"), "/file"))
        expect(status.success?).to be(true), err
        expect(out == expected).to be(true), "the to_path body differs (#{out.bytesize} bytes)"
      end
    end

    describe "hostile and broken clients" do
      it "answers plain HTTP sent to a TLS port with a plain-text 400 (or closes), never hangs" do
        answer = raw_request(port("main"), "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout: 5)
        expect(answer.start_with?("HTTP/1.1 400") || !answer.include?("HTTP/")).to be(true), answer.inspect
        expect(answer).not_to include("hello from")
        expect_tls_serving
      end

      it "closes a connection whose handshake never starts or never finishes at the head timeout (head_timeout: 2)" do
        partial_hello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".b + Random.new(1).bytes(40)
        ["", partial_hello].each do |bytes|
          socket = TCPSocket.new("127.0.0.1", port("timeout"))
          started = TlsHelpers.now
          socket.write(bytes)
          _data, closed = read_for(socket, 8)
          elapsed = TlsHelpers.now - started
          expect(closed).to be(true), "still open after 8 s (sent #{bytes.bytesize} bytes)"
          expect(elapsed).to be_between(1.5, 4.5), "closed after #{elapsed.round(2)} s (sent #{bytes.bytesize} bytes)"
        ensure
          socket&.close
        end
        expect_tls_serving("timeout")
      end

      it "refuses a TLS 1.2 renegotiation (s_client's R) and keeps serving" do
        need("openssl")
        need("curl")
        probe = renegotiation_probe(port("main"))
        expect(probe[:output]).to include("RENEGOTIATING")
        expect(probe[:handshakes]).to eq(1), probe[:output]
        expect_tls_serving
      end

      it "is not hurt by clients that vanish mid-record or mid-handshake: downloads alongside stay whole, descriptors come back" do
        need("curl")
        expected = File.binread(File.join(@public, "eight.bin"))
        tls_get(port("main"), "/", ca: certs.ca)
        fds = open_fds(@server.pid)
        downloads = Thread.new do
          Array.new(3) { curl("--cacert", certs.ca, *https(port("main"), "/eight.bin")) }
        end
        20.times do |i|
          if i.even?
            ssl = tls_socket(port("main"), ca: certs.ca)
            ssl.write("GET / HTTP/1.1\r\nHost: localhost\r\n")
            tcp = ssl.to_io
            tcp.write("\x17\x03\x03\x40\x00".b + Random.new(i).bytes(300)) # a 16 KiB record, 300 bytes of it
          else
            tcp = TCPSocket.new("127.0.0.1", port("main"))
            tcp.write("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".b + Random.new(i).bytes(40)) # half a ClientHello
          end
          tcp.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii")) if (i % 4) < 2 # RST
          tcp.close
        end
        expect(downloads.join(60)).not_to be_nil, "the downloads did not finish in 60 s"
        downloads.value.each do |out, err, status|
          expect(status.success?).to be(true), err
          expect(out == expected).to be(true), "a download alongside was damaged (#{out.bytesize} bytes)"
        end
        settled = eventually(10) { open_fds(@server.pid) <= fds }
        expect(settled).to be(true), "descriptors: #{fds} before, #{open_fds(@server.pid)} after"
        expect_tls_serving
      end
    end

    describe "Iodine.connect over TLS" do
      it "talks wss to our server trusting the CA; fails (on_close only) with the system roots, or to a self-signed server" do
        result = run_iodine_client(<<~RUBY)
          trusting = Iodine::TLS.new.trust(#{certs.ca.inspect})
          good = nil
          good = Recorder.new("good", on_open: ->(c) { c.write("hello wss"); c.write("\\x00\\x01tls".b) },
                                      on_message: ->(c, _d) { c.close if good.messages.size == 2 })
          Iodine.connect(url: "wss://127.0.0.1:#{port('main')}/ws", handler: good, tls: trusting)
          Iodine.connect(url: "wss://127.0.0.1:#{port('main')}/ws", handler: Recorder.new("system roots"), connect_timeout: 5)
          Iodine.connect(url: "wss://127.0.0.1:#{port('wss_auto')}/ws", handler: Recorder.new("self-signed"), tls: trusting,
                         connect_timeout: 5)
          Recorder.stop_when(15)
          Iodine.start
          puts JSON.generate(Recorder::ALL.to_h { |r| [r.name, r.report.merge("raw" => r.messages.map { |m| [m.encoding.to_s, m.b.inspect] })] })
        RUBY
        good = result["good"]
        expect(good["events"] - ["drained"]).to eq(["open :websocket env=nil", "close"])
        expect(good["raw"]).to eq([["UTF-8", "hello wss".b.inspect], ["ASCII-8BIT", "\x00\x01tls".b.inspect]])
        expect(result["system roots"]["events"]).to eq(["close"])
        expect(result["self-signed"]["events"]).to eq(["close"])
        expect_tls_serving
      end

      it "raw TLS: to a Ruby OpenSSL server by name (SNI sent, name checked), and to our service: :raw listener with tls:" do
        good = RubyTlsServer.new(cert: certs.server_cert, key: certs.server_key)
        wrong_name = RubyTlsServer.new(cert: certs.other_cert, key: certs.other_key)
        result = run_iodine_client(<<~RUBY)
          trusting = Iodine::TLS.new.trust(#{certs.ca.inspect})
          line = lambda do |name|
            r = nil
            r = Recorder.new(name, on_open: ->(c) { c.write("ping\\n") },
                                   on_message: ->(c, _d) { c.close if r.messages.join.end_with?("\\n") })
          end
          Iodine.connect(service: :tls, address: "localhost", port: #{good.port}, handler: line.call("ruby"), tls: trusting)
          Iodine.connect(service: :raw, address: "127.0.0.1", port: #{port('raw_tls')}, handler: line.call("ours"), tls: trusting)
          Iodine.connect(service: :tls, address: "localhost", port: #{wrong_name.port}, handler: Recorder.new("wrong name"),
                         tls: trusting, connect_timeout: 5)
          Recorder.stop_when(15)
          Iodine.start
          puts JSON.generate(Recorder::ALL.to_h { |r| [r.name, r.report.merge("joined" => r.messages.join)] })
        RUBY
        %w[ruby ours].each do |name|
          events = result[name]["events"] - ["drained"]
          expect([events.size, events.first, events.last]).to match([2, start_with("open"), "close"]), "#{name}: #{events}"
        end
        expect(result["ruby"]["joined"]).to eq("ruby:ping\n")
        expect(good.seen["names"]).to eq(["localhost"])
        expect(result["ours"]["joined"]).to eq("raw:ping\n")
        expect(result["wrong name"]["events"]).to eq(["close"])
        # It did reach the server, and refused its certificate.
        expect(eventually(2) { wrong_name.seen["errors"].size == 1 }).to be(true), wrong_name.seen.inspect
      ensure
        [good, wrong_name].each { |s| s&.stop }
      end
    end

    describe "reloading certificates" do
      it "#reload reads the files again (returning self); a file that fails keeps the old certificate and logs one error; SIGHUP reloads too" do
        expect(common_name(peer_cert(port("reload")))).to eq("localhost")
        TlsHelpers.install_pair(@reload_dir, File.read(certs.other_cert), File.read(certs.other_key))
        expect(http_get(port("control"), "/reload").body).to eq("true")
        expect(common_name(peer_cert(port("reload")))).to eq("other.test")

        before = @server.log.lines.size
        TlsHelpers.install_pair(@reload_dir, "not a certificate\n", File.read(certs.other_key))
        expect(http_get(port("control"), "/reload").body).to eq("true")
        expect(common_name(peer_cert(port("reload")))).to eq("other.test")
        new_lines = log_lines_after(@server, before)
        errors = new_lines.grep(/error/i)
        expect(errors.size).to eq(1), new_lines.join
        expect(errors.first).to include("cert.pem")

        TlsHelpers.install_pair(@reload_dir, File.read(certs.server_cert), File.read(certs.server_key))
        @server.signal("HUP")
        back = eventually(5) { common_name(peer_cert(port("reload"))) == "localhost" }
        expect(back).to be(true), "SIGHUP did not bring the localhost certificate back"
        expect(@server.exited?).to be(false)
        expect_tls_serving
      end
    end
  end

  describe "Iodine::TLS" do
    it "has SUPPORTED true (api.md §1.1)" do
      result, err, = run_script('puts JSON.generate(defined?(Iodine::TLS::SUPPORTED) ? Iodine::TLS::SUPPORTED : "undefined")')
      expect(result).to be(true), err
    end

    it "returns self from use_certificate (positional and named), trust, on_protocol and reload" do
      c = certs
      result, err, = run_script(<<~RUBY)
        tls = Iodine::TLS.new
        out = { "class" => tls.class.name }
        out["positional"] = tls.use_certificate("localhost", #{c.server_cert.inspect}, #{c.server_key.inspect}).equal?(tls)
        out["named"] = tls.use_certificate(server_name: "other.test", certificate: #{c.other_cert.inspect},
                                           private_key: #{c.other_key.inspect}).equal?(tls)
        enc = Iodine::TLS.new
        out["password"] = enc.use_certificate("localhost", #{c.server_cert.inspect}, #{c.server_key_encrypted.inspect},
                                              #{c.password.inspect}).equal?(enc)
        signed = Iodine::TLS.new
        out["self-signed"] = signed.use_certificate("selfsigned.test").equal?(signed)
        out["trust"] = tls.trust(#{c.ca.inspect}).equal?(tls)
        out["on_protocol"] = tls.on_protocol("x/1") { nil }.equal?(tls)
        out["reload"] = tls.reload.equal?(tls)
        out["new with arguments"] = Iodine::TLS.new("localhost", #{c.server_cert.inspect}, #{c.server_key.inspect}).class.name
        puts JSON.generate(out)
      RUBY
      expect(result).to eq("class" => "Iodine::TLS", "positional" => true, "named" => true,
                           "password" => true, "self-signed" => true, "trust" => true, "on_protocol" => true,
                           "reload" => true, "new with arguments" => "Iodine::TLS"), err
    end

    it "raises (an exception, not a crash) for a missing file, a wrong password, a cert/key mismatch, a missing CA file" do
      c = certs
      result, err, = run_script(<<~RUBY)
        tries = {
          "missing cert" => -> { Iodine::TLS.new("localhost", "/nonexistent/iodine-cert.pem", #{c.server_key.inspect}) },
          "missing key" => -> { Iodine::TLS.new("localhost", #{c.server_cert.inspect}, "/nonexistent/iodine-key.pem") },
          "wrong password" => -> { Iodine::TLS.new("localhost", #{c.server_cert.inspect}, #{c.server_key_encrypted.inspect}, "wrong") },
          "mismatch" => -> { Iodine::TLS.new("localhost", #{c.server_cert.inspect}, #{c.mismatch_key.inspect}) },
          "missing CA" => -> { Iodine::TLS.new.trust("/nonexistent/iodine-ca.pem") }
        }
        puts JSON.generate(tries.transform_values { |t| t.call && "no error" rescue "\#{$!.class}: \#{$!.message}" })
      RUBY
      expect(result).to be_a(Hash), err
      expect(result.keys).to eq(["missing cert", "missing key", "wrong password", "mismatch", "missing CA"])
      result.each { |what, answer| expect(answer).not_to eq("no error"), what }
      expect(result["missing cert"]).to include("/nonexistent/iodine-cert.pem")
      expect(result["missing key"]).to include("/nonexistent/iodine-key.pem")
      expect(result["missing CA"]).to include("/nonexistent/iodine-ca.pem")
    end
  end

  describe "the iodine command line" do
    def app
      support_file("scheme.ru", TlsHelpers::SCHEME_RU)
    end

    it "-tls serves HTTPS with a self-signed certificate (curl -k works, curl without -k does not)" do
      need("curl")
      server = ServerProcess.new(["-t", "2", "-tls", app])
      out, err, status = curl("-k", *https(server.port, "/x"))
      expect([status.success?, out]).to eq([true, "https /x"]), err
      _out, _err, status = curl(*https(server.port))
      expect(status.exitstatus).to eq(60)
      expect(server.stop.exitstatus).to eq(0)
    ensure
      server&.stop
    end

    it "-tls-cert/-tls-key serve the files' certificate (verified by curl --cacert, TLS 1.2 and 1.3); plain HTTP gets a 400 or a close" do
      need("curl")
      server = ServerProcess.new(["-t", "2", "-tls-cert", certs.server_cert, "-tls-key", certs.server_key, app])
      [%w[--tlsv1.2 --tls-max 1.2], %w[--tlsv1.3]].each do |flags|
        out, err, status = curl("--cacert", certs.ca, *flags, *https(server.port, "/a"))
        expect([status.success?, out]).to eq([true, "https /a"]), err
      end
      answer = raw_request(server.port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout: 5)
      expect(answer.start_with?("HTTP/1.1 400") || !answer.include?("HTTP/")).to be(true), answer.inspect
    ensure
      server&.stop
    end

    it "-cert/-key (the aliases) take a PKCS#1 RSA key, and a fullchain file is sent whole (curl trusts only the root)" do
      need("curl")
      server = ServerProcess.new(["-t", "2", "-cert", certs.server_cert, "-key", certs.server_key_pkcs1, app])
      out, err, status = curl("--cacert", certs.ca, *https(server.port, "/pkcs1"))
      expect([status.success?, out]).to eq([true, "https /pkcs1"]), err
      server.stop
      server = ServerProcess.new(["-t", "2", "-tls-cert", certs.chain_cert, "-tls-key", certs.chain_key, app])
      out, err, status = curl("--cacert", certs.ca, *https(server.port, "/chain"))
      expect([status.success?, out]).to eq([true, "https /chain"]), err
    ensure
      server&.stop
    end

    it "-tls-pass opens an encrypted PKCS#8 key" do
      need("curl")
      server = ServerProcess.new(["-t", "2", "-tls-cert", certs.server_cert, "-tls-key", certs.server_key_encrypted,
                                  "-tls-pass", certs.password, app])
      out, err, status = curl("--cacert", certs.ca, *https(server.port, "/enc"))
      expect([status.success?, out]).to eq([true, "https /enc"]), err
    ensure
      server&.stop
    end

    {
      "a wrong -tls-pass" => ->(c) { ["-tls-cert", c.server_cert, "-tls-key", c.server_key_encrypted, "-tls-pass", "wrong"] },
      "an encrypted key without -tls-pass" => ->(c) { ["-tls-cert", c.server_cert, "-tls-key", c.server_key_encrypted] },
      "a missing certificate file" => ->(c) { ["-tls-cert", "/nonexistent/iodine-cert.pem", "-tls-key", c.server_key] },
      "a missing key file" => ->(c) { ["-tls-cert", c.server_cert, "-tls-key", "/nonexistent/iodine-key.pem"] },
      "a certificate and key that don't match" => ->(c) { ["-tls-cert", c.server_cert, "-tls-key", c.mismatch_key] },
      "a certificate file that is not PEM" => ->(c) { ["-tls-cert", File.join(c.dir, "openssl.cnf"), "-tls-key", c.server_key] }
    }.each do |what, flags|
      it "exits 1 with one line starting with Error: and no backtrace for #{what}" do
        port = ServerProcess.free_port
        out, err, status, timed_out = run_cmd(RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE, "-p", port.to_s, "-b", "127.0.0.1",
                                              *flags.call(certs), app, seconds: 20)
        expect(timed_out).to be(false), "still running after 20 s:\n#{out}#{err}"
        expect(status.exitstatus).to eq(1), "#{status}\n#{out}#{err}"
        error_lines = err.lines.grep(/\AError:/)
        expect(error_lines.size).to eq(1), err
        expect(err).not_to match(/\.rb:\d+:in |panicked|backtrace/i)
        expect(error_lines.first).to include("/nonexistent/") if what.include?("missing")
      end
    end

    it "SIGHUP reloads the certificate files; a file that fails keeps the old certificate and logs one error line" do
      dir = Dir.mktmpdir("iodine-tls-hup")
      TlsHelpers.install_pair(dir, File.read(certs.server_cert), File.read(certs.server_key))
      server = ServerProcess.new(["-t", "2", "-tls-cert", File.join(dir, "cert.pem"), "-tls-key", File.join(dir, "key.pem"), app])
      expect(common_name(peer_cert(server.port))).to eq("localhost")

      TlsHelpers.install_pair(dir, File.read(certs.other_cert), File.read(certs.other_key))
      server.signal("HUP")
      swapped = eventually(5) { common_name(peer_cert(server.port)) == "other.test" }
      expect(swapped).to be(true), "still localhost 5 s after SIGHUP:\n#{server.log}"

      before = server.log.lines.size
      TlsHelpers.install_pair(dir, File.read(certs.other_cert), "not a key\n")
      server.signal("HUP")
      new_lines = log_lines_after(server, before)
      expect(new_lines.grep(/error/i).size).to eq(1), new_lines.join
      expect(common_name(peer_cert(server.port))).to eq("other.test")

      TlsHelpers.install_pair(dir, File.read(certs.server_cert), File.read(certs.server_key))
      server.signal("HUP")
      back = eventually(5) { common_name(peer_cert(server.port)) == "localhost" }
      expect(back).to be(true)
      expect(server.exited?).to be(false)
      expect(server.stop.exitstatus).to eq(0)
    ensure
      server&.stop
      FileUtils.rm_rf(dir) if dir
    end
  end

  describe "a slow reader of a large streamed body" do
    it "keeps the server's memory bounded while a client reads 256 MiB slowly over TLS, then gets every byte" do
      server = ServerProcess.new(["-t", "2", "-tls-cert", certs.server_cert, "-tls-key", certs.server_key,
                                  support_file("big.ru", TlsHelpers::BIG_RU)])
      total = 256 * 1024 * 1024
      tls_get(server.port, "/", ca: certs.ca) # warmed up: threads and buffers exist
      before = rss_kib(server.pid)
      peak = before
      ssl = tls_socket(server.port, ca: certs.ca)
      ssl.write("GET /big HTTP/1.0\r\nHost: localhost\r\n\r\n")
      head, = read_tls(ssl, 10) { |got| got.include?("\r\n\r\n") }
      expect(head).to start_with("HTTP/1.1 200").or start_with("HTTP/1.0 200")
      received = head.bytesize - (head.index("\r\n\r\n") + 4)
      # 3 s of not reading at all, then 3 s of 16 KiB now and then (about 1 MiB/s).
      stall_until = TlsHelpers.now + 3
      while TlsHelpers.now < stall_until
        peak = [peak, rss_kib(server.pid)].max
        sleep 0.1
      end
      slow_until = TlsHelpers.now + 3
      while TlsHelpers.now < slow_until
        data, closed = read_tls(ssl, 0.05) { |got| got.bytesize >= 16_384 }
        received += data.bytesize
        break if closed

        peak = [peak, rss_kib(server.pid)].max
        sleep 0.015
      end
      slow_peak = peak
      # Then as fast as it comes.
      deadline = TlsHelpers.now + 90
      while received < total && TlsHelpers.now < deadline
        data, closed = read_tls(ssl, 1) { |got| got.bytesize >= 1_048_576 }
        received += data.bytesize
        break if closed
      end
      grown = (slow_peak - before) / 1024.0
      warn format("  256 MiB to a slow TLS reader: RSS %.1f MiB -> %.1f MiB (+%.1f MiB) while slow",
                  before / 1024.0, slow_peak / 1024.0, grown)
      expect(received).to eq(total)
      expect(grown).to be < 64
      expect(slow_peak / 1024.0).to be < 200
    ensure
      ssl&.to_io&.close
      server&.stop
    end
  end
end
