# frozen_string_literal: true

# The idle client of bench/http.rb, bench/tls.rb and bench/h2.rb (run as its own process, pinned by
# `with_idle_client` in bench/support.rb):
#
#   ruby bench/idle_client.rb PORT COUNT OPEN_SECONDS HOLD_SECONDS MODE
#
# Opens COUNT connections to 127.0.0.1:PORT with 8 threads, for at most OPEN_SECONDS; each,
# by MODE:
# - `plain`: connects;
# - `tls`: connects and completes a TLS handshake (no verification; SNI localhost);
# - `get`: connects, sends one keep-alive GET / and reads the whole answer (head and
#   Content-Length bytes);
# - `h2c`: connects, speaks HTTP/2 with prior knowledge (preface, SETTINGS), sends one GET /
#   on stream 1, acknowledges the server's SETTINGS and reads frames until that stream ends
#   (its :status must be 200).
# Then prints "ready OPEN FAILED" and holds them, sending nothing, until its stdin closes or
# HOLD_SECONDS pass.

require "socket"
require "openssl"

port, count, open_for, hold = ARGV.first(4).map { |a| Integer(a) }
mode = ARGV.fetch(4)
MODES = %w[plain tls get h2c].freeze
raise ArgumentError, "mode must be one of #{MODES.join(', ')}, got #{mode.inspect}" unless MODES.include?(mode)

_, hard = Process.getrlimit(:NOFILE)
Process.setrlimit(:NOFILE, hard, hard)
now = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
stop_at = now.call + open_for
ctx = OpenSSL::SSL::SSLContext.new
ctx.verify_mode = OpenSSL::SSL::VERIFY_NONE

# `sock`'s TLS handshake, done before `by` (or an exception); the TLS socket.
handshake = lambda do |sock, by|
  ssl = OpenSSL::SSL::SSLSocket.new(sock, ctx)
  ssl.sync_close = true
  ssl.hostname = "localhost"
  loop do
    left = by - now.call
    raise "handshake timeout" if left <= 0

    case ssl.connect_nonblock(exception: false)
    when :wait_readable then IO.select([ssl], nil, nil, left)
    when :wait_writable then IO.select(nil, [ssl], nil, left)
    else return ssl
    end
  end
end

# Appends what `sock` has to `data`, waiting until `by`; raises at the deadline or on close.
read_more = lambda do |sock, data, by|
  left = by - now.call
  raise "no whole answer within 10 s" if left <= 0

  case (chunk = sock.read_nonblock(16_384, exception: false))
  when :wait_readable then IO.select([sock], nil, nil, left)
  when nil then raise "closed by the server after #{data.bytesize} bytes"
  else data << chunk
  end
end

# One whole answer from `sock` before `by`, or an exception.
read_response = lambda do |sock, by|
  data = +""
  loop do
    if (head_end = data.index("\r\n\r\n"))
      raise "answered #{data[0, 60].inspect}" unless data.start_with?("HTTP/1.1 200")

      length = data[0, head_end][/^content-length:\s*(\d+)/i, 1]
      raise "no content-length in #{data[0, head_end].inspect}" unless length
      return data if data.bytesize >= head_end + 4 + length.to_i
    end
    read_more.call(sock, data, by)
  end
end

# An HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload.
frame = lambda do |type, flags, stream, payload = ""|
  [payload.bytesize >> 8, payload.bytesize & 0xff, type, flags, stream].pack("nCCCN") + payload
end
# The client preface, an empty SETTINGS frame, then HEADERS (END_STREAM | END_HEADERS) on
# stream 1 with GET, http, / from HPACK's static table and :authority as a literal.
authority = "127.0.0.1"
h2c_request = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".b + frame.call(4, 0, 0) +
              frame.call(1, 0x5, 1, [0x82, 0x86, 0x84, 0x41, authority.bytesize].pack("C*") + authority)

# Reads frames from `sock` before `by` until stream 1 ends, acknowledging the server's
# SETTINGS; raises if the answer is not a 200 or the server sends GOAWAY.
read_h2_response = lambda do |sock, by|
  data = "".b
  loop do
    while data.bytesize >= 9
      high, low, type, flags, stream = data.unpack("nCCCN")
      length = (high << 8) | low
      break if data.bytesize < 9 + length

      payload = data.byteslice(9, length)
      data = data.byteslice(9 + length, data.bytesize)
      stream &= 0x7fff_ffff
      case type
      when 4 then sock.write(frame.call(4, 0x1, 0)) if flags.nobits?(0x1) # SETTINGS: ack it
      when 7 then raise "GOAWAY from the server"
      when 1
        # :status 200 is HPACK static entry 8 (0x88); the server sends no padding or priority.
        if stream == 1 && payload.getbyte(0) != 0x88
          raise "answered a HEADERS block starting #{payload.byteslice(0, 4).inspect}"
        end
      end
      return if stream == 1 && [0, 1].include?(type) && flags.anybits?(0x1) # END_STREAM
    end
    read_more.call(sock, data, by)
  end
end

held = []
failed = 0
started = 0
lock = Mutex.new
workers = Array.new([count, 8].min) do
  Thread.new do
    loop do
      break if now.call > stop_at || lock.synchronize { (started += 1) > count }

      sock = nil
      begin
        sock = Socket.tcp("127.0.0.1", port, connect_timeout: 10)
        case mode
        when "tls" then sock = handshake.call(sock, now.call + 10)
        when "get"
          sock.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
          read_response.call(sock, now.call + 10)
        when "h2c"
          sock.write(h2c_request)
          read_h2_response.call(sock, now.call + 10)
        end
        lock.synchronize { held << sock }
      rescue StandardError => e
        lock.synchronize { failed += 1 }
        warn "idle client: #{e.class}: #{e.message}" if failed == 1
        sock&.close rescue nil
      end
    end
  end
end
workers.each(&:join)
warn "idle client: stopped opening after #{open_for} s" if held.size + failed < count
$stdout.puts "ready #{held.size} #{failed}"
$stdout.flush
IO.select([$stdin], nil, nil, hold) # EOF makes it readable
exit!(0) # the kernel closes them all at once
