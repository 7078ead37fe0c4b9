# frozen_string_literal: true

require "spec_helper"
require "fileutils"

# A client that leaves - at any moment of its request, cleanly (FIN) or with a reset (RST) -
# never costs the server a worker thread, never leaves a body unclosed or closed twice, and
# is never logged above debug level. spec/support/apps/client_leaves.ru has one path per
# moment.
RSpec.describe "a client leaving never costs a worker" do
  # Each phase: what the client sends, how long it stays before leaving, whether it reads
  # what arrived meanwhile (a clean close with unread data would turn into a reset), and the
  # kind of body whose close calls are counted.
  upload_head = "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n" \
                "Content-Length: 1000000\r\n\r\n"
  get = ->(path) { "GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" }
  phases = [
    { name: "during the request head (half a head sent)",
      bytes: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ye", stay: 0.1 },
    { name: "during the upload (100 KB of a 1,000,000 byte body sent)",
      bytes: upload_head + ("u" * 100_000), stay: 0.1 },
    { name: "while the app runs (it sleeps 0.5 s, the client leaves after 0.1 s)",
      bytes: get.call("/sleep"), stay: 0.1 },
    { name: "during a 5 MB Array body (the client reads nothing)",
      bytes: get.call("/array"), stay: 0.3, reads: false, kind: "array" },
    { name: "during a trickling each body (40 x 1000 bytes, 0.05 s apart)",
      bytes: get.call("/trickle"), stay: 0.2, kind: "trickle" },
    { name: "during a Rack 3 callable body (40 x 1000 bytes, 0.05 s apart)",
      bytes: get.call("/callable"), stay: 0.2, kind: "callable" },
    { name: "during a to_path body (a 20 MB file)",
      bytes: get.call("/file"), stay: 0.3, reads: false, kind: "file" },
    { name: "during a hijacked response (the app writes for 2 s)",
      bytes: get.call("/hijack"), stay: 0.3 },
    { name: "while an each body is blocked on backpressure (the client reads nothing for 1 s)",
      bytes: get.call("/backpressure"), stay: 1.0, reads: false, kind: "backpressure" }
  ]

  before(:all) do
    @dir = Dir.mktmpdir("client-leaves")
    @big_file = File.join(@dir, "twenty-megabytes.bin")
    megabyte = "f" * (1024 * 1024)
    File.open(@big_file, "wb") { |f| 20.times { f.write(megabyte) } }
  end
  after(:all) { FileUtils.rm_rf(@dir) if @dir }

  # GET on a fresh connection, giving up after `timeout` seconds.
  def get_with_timeout(path, timeout)
    Net::HTTP.start("127.0.0.1", @server.port, open_timeout: timeout, read_timeout: timeout) do |http|
      http.request(Net::HTTP::Get.new(path))
    end
  end

  # The app's /workers answer once it equals `expected`, else the last answer (or error)
  # seen within `seconds`.
  def workers_within(expected, seconds = 1.2)
    deadline = Time.now + seconds
    last = nil
    loop do
      left = [deadline - Time.now, 0.3].max
      last = begin
        get_with_timeout("/workers", left).body
      rescue Net::ReadTimeout, Net::OpenTimeout, SystemCallError, EOFError, IOError => e
        "#{e.class} (no answer)"
      end
      return last if last == expected.to_s || Time.now > deadline

      sleep 0.05
    end
  end

  def closes(kind)
    Integer(get_with_timeout("/closes?kind=#{kind}", 3).body)
  end

  # Waits (up to `seconds`) for the close count of `kind` to pass `before`, then a little
  # longer for a second close that must not come; returns the count.
  def closes_after(kind, before, seconds = 1.0)
    deadline = Time.now + seconds
    count = closes(kind)
    while count <= before && Time.now < deadline
      sleep 0.05
      count = closes(kind)
    end
    sleep 0.15
    closes(kind)
  end

  # Reads whatever already arrived, without waiting.
  def drain(socket)
    64.times { socket.read_nonblock(1 << 20) }
  rescue IO::WaitReadable, EOFError, SystemCallError, IOError
    nil
  end

  def leave(socket, how, reads: true)
    if how == :rst
      socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii"))
    elsif reads
      drain(socket)
    end
    socket.close
  end

  def trigger(phase, how)
    socket = TCPSocket.new("127.0.0.1", @server.port)
    Timeout.timeout(5) { socket.write(phase[:bytes]) }
    sleep phase[:stay]
    leave(socket, how, reads: phase.fetch(:reads, true))
  ensure
    socket.close if socket && !socket.closed?
  end

  def expect_server_whole(threads)
    expect(@server.exited?).to be(false), "the server process ended:\n#{@server.log[-3000..] || @server.log}"
    expect(workers_within(threads)).to eq(threads.to_s)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    answer = begin
      res = get_with_timeout("/", 1)
      [res.code, res.body]
    rescue Net::ReadTimeout, Net::OpenTimeout, SystemCallError, EOFError, IOError => e
      e.class.name
    end
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    expect(answer).to eq(%w[200 ok])
    expect(elapsed).to be < 1.0
  end

  # Lines the server wrote since it finished booting.
  def log_since_boot
    @server.log.byteslice(@boot_log_size..) || ""
  end

  [1, 4].each do |threads|
    context "with -t #{threads}" do
      before(:all) do
        @server = ServerProcess.new(["-t", threads.to_s, app_path("client_leaves.ru")],
                                    env: { "CLIENT_LEAVES_FILE" => @big_file })
        Timeout.timeout(10) { sleep 0.05 until @server.log.include?("Listening on") }
        @boot_log_size = @server.log.bytesize
      end
      after(:all) { @server&.stop }

      phases.each do |phase|
        %i[clean rst].each do |how|
          leaving = how == :rst ? "with a reset (SO_LINGER 0)" : "with a clean close"
          it "keeps every worker when the client leaves #{phase[:name]}, #{leaving}" do
            kind = phase[:kind]
            closed_before = closes(kind) if kind
            trigger(phase, how)
            expect_server_whole(threads)
            next unless kind

            calls = closes_after(kind, closed_before) - closed_before
            expect(calls).to eq(1), "body.close was called #{calls} times for one #{kind} request (expected exactly once)"
          end
        end
      end

      if threads == 4
        it "answers 1,000 normal requests after 200 concurrent abandoned streams" do
          sockets = Array.new(200) do
            s = TCPSocket.new("127.0.0.1", @server.port)
            s.write("GET /trickle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s
          end
          sleep 0.2
          sockets.each_with_index { |s, i| leave(s, i.even? ? :rst : :clean) }

          answered, failed = concurrent_gets(@server.port, clients: 10, requests: 100, seconds: 20)
          expect(failed).to eq([])
          expect(answered.size).to eq(1000)
          expect(answered.uniq).to eq(["200"])
          expect(workers_within(threads)).to eq(threads.to_s)
          expect(@server.exited?).to be false
        end
      end

      it "logged no ERROR line for all those clients leaving" do
        errors = log_since_boot.lines.grep(/ERROR/)
        expect(errors).to eq([])
      end

      it "logged nothing at all above debug level (no FATAL/ERROR/WARNING/INFO line) for them" do
        noisy = log_since_boot.lines.grep(/\A(FATAL|ERROR|WARNING|INFO): /)
        expect(noisy).to eq([])
      end

      it "then stops on TERM with exit status 0 and no [BUG] in its log" do
        @server.signal("TERM")
        status = @server.wait(15)
        log = @server.log
        expect(status&.exitstatus).to eq(0), "exit status #{status.inspect}; log tail:\n#{log[-3000..] || log}"
        expect(log).not_to include("[BUG]")
      end
    end
  end
end
