# frozen_string_literal: true

require "spec_helper"
require "openssl"
require "tmpdir"
require_relative "../support/tls_certs"

# The unhappy paths of an app served over TLS (`-tls-cert`/`-tls-key`, `-t 2`): the app raises,
# throws or kills its thread; a client floods garbage after its handshake, or leaves halfway
# through a request (close and RST). Each time the server answers the next client over TLS and
# keeps both of its Ruby worker threads.
RSpec.describe "TLS when the app or the client misbehaves" do
  app_source = <<~'RUBY'
    run(lambda do |env|
      case env["PATH_INFO"]
      when "/raise" then raise "boom over TLS"
      when "/throw" then throw :nobody_catches
      when "/kill" then Thread.current.kill
      when "/threads"
        alive = Thread.list.count { |t| t.name.to_s.start_with?("iodine-worker") && t.alive? }
        [200, {}, [alive.to_s]]
      else [200, {}, ["ok #{env['rack.url_scheme']}"]]
      end
    end)
  RUBY

  before(:all) do
    skip "openssl is not installed (bin/setup installs it)" unless TlsCerts.openssl?
    @certs = TlsCerts.paths
    @dir = Dir.mktmpdir("iodine-tls-failures")
    app = File.join(@dir, "app.ru")
    File.write(app, app_source)
    @server = ServerProcess.new(["-t", "2", "-tls-cert", @certs.server_cert, "-tls-key", @certs.server_key, app])
  end

  after(:all) do
    @server&.stop
    FileUtils.rm_rf(@dir) if @dir
  end

  # A TLS connection to the server, handshake done, checked against the test CA.
  def tls_socket
    ctx = OpenSSL::SSL::SSLContext.new
    ctx.ca_file = @certs.ca
    ctx.verify_mode = OpenSSL::SSL::VERIFY_PEER
    ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new("127.0.0.1", @server.port), ctx)
    ssl.hostname = "localhost"
    ssl.sync_close = true
    Timeout.timeout(10) { ssl.connect }
    ssl
  end

  # GET `path` over TLS: [status, body]; [nil, nil] when the server closed without an answer.
  def get(path)
    http = Net::HTTP.new("localhost", @server.port)
    http.ipaddr = "127.0.0.1" if http.respond_to?(:ipaddr=)
    http.use_ssl = true
    http.ca_file = @certs.ca
    http.verify_mode = OpenSSL::SSL::VERIFY_PEER
    http.open_timeout = http.read_timeout = 10
    http.max_retries = 0 if http.respond_to?(:max_retries=)
    response = http.start { |h| h.get(path) }
    [response.code.to_i, response.body]
  rescue EOFError, Errno::ECONNRESET, OpenSSL::SSL::SSLError
    [nil, nil]
  end

  # The server answers over TLS, and both worker threads are alive (a dead one is replaced
  # when the pool next looks, soon after).
  def expect_serving_with_both_workers
    expect(get("/")).to eq([200, "ok https"])
    threads = nil
    30.times do
      break if (threads = get("/threads")[1]) == "2"

      sleep 0.1
    end
    expect(threads).to eq("2"), @server.log
  end

  it "answers an app that raises or throws with a 500, and goes on serving" do
    expect(get("/raise")[0]).to eq(500)
    expect(get("/throw")[0]).to eq(500)
    expect(@server.log).to include("boom over TLS")
    expect_serving_with_both_workers
  end

  it "replaces a worker thread the app killed, and goes on serving" do
    get("/kill") # the thread answering died: how this client is told is not the point
    expect_serving_with_both_workers
  end

  it "answers garbage sent after the handshake with a 400 and a close, and goes on serving" do
    ssl = tls_socket
    ssl.write("\x00\xffNOT HTTP\r\n\r\n" * 1000)
    answer = +""
    Timeout.timeout(10) do
      loop { answer << ssl.readpartial(4096) }
    rescue EOFError, Errno::ECONNRESET, OpenSSL::SSL::SSLError
      nil
    end
    expect(answer).to start_with("HTTP/1.1 400")
    ssl.close rescue nil
    expect_serving_with_both_workers
  end

  it "survives clients that leave halfway through a request, by close and by RST" do
    10.times do |i|
      ssl = tls_socket
      ssl.write("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n#{'x' * 5000}")
      if i.even?
        ssl.close
      else
        ssl.io.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii"))
        ssl.io.close # RST, no close_notify
      end
    end
    expect_serving_with_both_workers
  end
end
