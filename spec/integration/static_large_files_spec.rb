# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require "open3"

# Large static files: sent with sendfile(2) from the IO threads, so memory does not grow with
# the file or the number of downloads; clients that leave, files that change or shrink while
# they are sent; the small-file cache seeing changes.
RSpec.describe "static files, large and changing (-www)" do
  GIB = 1024 * 1024 * 1024

  around do |example|
    Dir.mktmpdir do |dir|
      @root = File.join(dir, "public")
      Dir.mkdir(@root)
      # Sparse: 1 GiB that takes no disk (reads give zeros from the page cache).
      File.open(File.join(@root, "huge.bin"), "w") { |f| f.truncate(GIB) }
      File.binwrite(File.join(@root, "eight.bin"), Random.new(7).bytes(8 * 1024 * 1024))
      File.write(File.join(@root, "small.txt"), "one")
      @server = ServerProcess.new(["-t", "1", "-www", @root])
      example.run
    ensure
      @server&.stop
    end
  end

  def url(path)
    "http://127.0.0.1:#{@server.port}#{path}"
  end

  def rss_kib(pid)
    File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)/, 1].to_i
  end

  def get(path)
    out, status = Open3.capture2("curl", "-s", "--max-time", "10", url(path))
    expect(status.success?).to be(true)
    out
  end

  it "sends a 1 GiB file to 20 clients at once without growing its memory by more than a few MiB" do
    get("/small.txt") # warmed up: the runtime's threads and buffers exist
    before = rss_kib(@server.pid)
    peak = before
    downloads = Array.new(20) do
      Thread.new do
        out, status = Open3.capture2("curl", "-s", "-o", "/dev/null", "--max-time", "120",
                                     "-w", "%{http_code} %{size_download}", url("/huge.bin"))
        [status.success?, out]
      end
    end
    peak = [peak, rss_kib(@server.pid)].max while downloads.any?(&:alive?) && sleep(0.05)
    results = downloads.map(&:value)
    expect(results).to all(eq([true, "200 #{GIB}"]))
    grown_mib = (peak - before) / 1024.0
    warn format("  1 GiB x 20 at once: RSS %.1f MiB -> peak %.1f MiB (+%.1f MiB)",
                before / 1024.0, peak / 1024.0, grown_mib)
    expect(grown_mib).to be < 4
  end

  it "lets clients leave halfway through a large file: nothing leaks and the next are served" do
    get("/small.txt")
    fds = open_fds(@server.pid)
    10.times do
      socket = TCPSocket.new("127.0.0.1", @server.port)
      socket.write("GET /eight.bin HTTP/1.1\r\nHost: x\r\n\r\n")
      socket.readpartial(65_536)
      # An abortive close (RST) for half of them, a plain one for the others.
      socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii")) if rand < 0.5
      socket.close
    end
    body, status = Open3.capture2("curl", "-s", "--max-time", "10", url("/eight.bin"), binmode: true)
    expect(status.success?).to be(true)
    expect(body.b).to eq(File.binread(File.join(@root, "eight.bin")))
    deadline = Time.now + 5
    sleep 0.05 while open_fds(@server.pid) > fds && Time.now < deadline
    expect(open_fds(@server.pid)).to be <= fds
  end

  it "cuts the answer short (never pads it) when the file shrinks while it is sent, and goes on serving" do
    path = File.join(@root, "huge.bin")
    socket = TCPSocket.new("127.0.0.1", @server.port)
    socket.write("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    head = +""
    head << socket.readpartial(1) until head.end_with?("\r\n\r\n")
    expect(head).to include("content-length: #{GIB}")
    # What the kernel already holds in the sockets' buffers (a few MiB) still arrives.
    File.truncate(path, 1024 * 1024)
    got = 0
    ended = false
    deadline = Time.now + 20
    while Time.now < deadline
      begin
        got += socket.readpartial(65_536).bytesize
      rescue EOFError, Errno::ECONNRESET
        ended = true
        break
      end
    end
    socket.close
    expect(ended).to be(true), "the connection was left open"
    expect(got).to be < 64 * 1024 * 1024
    expect(get("/small.txt")).to eq("one")
  end

  it "serves a small file's new contents as soon as it changes (the cache checks every time)" do
    path = File.join(@root, "small.txt")
    expect(get("/small.txt")).to eq("one")
    first_etag = `curl -s -I #{url('/small.txt')}`[/^etag: (.+)\r$/, 1]
    # Same size, new bytes and time; then a new size.
    File.write(path, "two")
    File.utime(Time.now + 5, Time.now + 5, path)
    expect(get("/small.txt")).to eq("two")
    expect(`curl -s -I #{url('/small.txt')}`[/^etag: (.+)\r$/, 1]).not_to eq(first_etag)
    File.write(path, "three!")
    expect(get("/small.txt")).to eq("three!")
    # Replaced by another file (a new inode), as deploy tools do.
    File.write("#{path}.new", "four")
    File.rename("#{path}.new", path)
    expect(get("/small.txt")).to eq("four")
    # Gone: the request goes on (no app here: 404), within the cache's 1 s of routes.
    File.delete(path)
    deadline = Time.now + 3
    code = nil
    while Time.now < deadline
      code = `curl -s -o /dev/null -w '%{http_code}' #{url('/small.txt')}`
      break if code == "404"

      sleep 0.1
    end
    expect(code).to eq("404")
  end

  it "logs static answers with -v: status, bytes, and (cut) for a download the client left" do
    logged = ServerProcess.new(["-t", "1", "-v", "-www", @root], chdir: Dir.tmpdir)
    base = "http://127.0.0.1:#{logged.port}"
    expect(`curl -s #{base}/small.txt`).to eq("one")
    etag = `curl -s -I #{base}/small.txt`[/^etag: (.+)\r$/, 1]
    expect(`curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: #{etag}' #{base}/small.txt`).to eq("304")
    expect(`curl -s -H 'Range: bytes=0-1' #{base}/small.txt`).to eq("on")
    socket = TCPSocket.new("127.0.0.1", logged.port)
    socket.write("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.readpartial(65_536)
    socket.close
    deadline = Time.now + 5
    sleep 0.05 until logged.log.include?("/huge.bin") || Time.now > deadline
    log = logged.log
    expect(log).to match(%r{"GET /small.txt HTTP/1.1" 200 3b})
    expect(log).to match(%r{"HEAD /small.txt HTTP/1.1" 200 0b})
    expect(log).to match(%r{"GET /small.txt HTTP/1.1" 304 0b})
    expect(log).to match(%r{"GET /small.txt HTTP/1.1" 206 2b})
    expect(log).to match(%r{"GET /huge.bin HTTP/1.1" 200 \d+b \d+ms \(cut\)})
  ensure
    logged&.stop
  end

  it "cuts a download whose client stopped reading, after the timeout, and serves the others meanwhile" do
    stalled = ServerProcess.new(["-t", "1", "-k", "2", "-www", @root], chdir: Dir.tmpdir)
    socket = TCPSocket.new("127.0.0.1", stalled.port)
    socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_RCVBUF, 65_536)
    socket.write("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.readpartial(1024)
    # Stalled: others are served meanwhile.
    expect(`curl -s --max-time 5 http://127.0.0.1:#{stalled.port}/small.txt`).to eq("one")
    sleep 5
    got = 0
    ended = false
    deadline = Time.now + 10
    while Time.now < deadline
      begin
        got += socket.readpartial(1 << 20).bytesize
      rescue EOFError, Errno::ECONNRESET
        ended = true
        break
      end
    end
    expect(ended).to be(true), "the stalled download was never cut"
    expect(got).to be < 256 * 1024 * 1024
    expect(`curl -s --max-time 5 http://127.0.0.1:#{stalled.port}/small.txt`).to eq("one")
  ensure
    socket&.close
    stalled&.stop
  end
end
