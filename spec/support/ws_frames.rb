# frozen_string_literal: true

require "socket"
require "securerandom"
require "digest/sha1"
require "base64"

# WebSocket (RFC 6455) by hand, for the specs that send what a client library never would:
# unmasked frames, RSV bits, invalid UTF-8, fragments with control frames between them. A
# Client is one TCP connection: the upgrade request, then frames both ways, every read
# bounded by a deadline.
module WsFrames
  GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
  OPCODES = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xA }.freeze
  NAMES = OPCODES.invert.freeze

  # A frame as read: `opcode` is a Symbol (an Integer for an unknown one), `payload` binary.
  Frame = Struct.new(:fin, :rsv, :opcode, :payload, :masked) do
    # The status code of a Close frame, nil when it carries none.
    def close_code
      payload.bytesize >= 2 ? payload.unpack1("n") : nil
    end

    def close_reason
      payload.byteslice(2..).to_s.force_encoding(Encoding::UTF_8)
    end
  end

  module_function

  def accept_key(key)
    Base64.strict_encode64(Digest::SHA1.digest(key + GUID))
  end

  # The upgrade request; a nil `key` or `version` leaves that header out.
  def upgrade_request(path, port:, key:, version: "13", headers: {})
    lines = ["GET #{path} HTTP/1.1", "Host: 127.0.0.1:#{port}", "Upgrade: websocket", "Connection: Upgrade"]
    lines << "Sec-WebSocket-Key: #{key}" if key
    lines << "Sec-WebSocket-Version: #{version}" if version
    headers.each { |name, value| lines << "#{name}: #{value}" }
    "#{lines.join("\r\n")}\r\n\r\n"
  end

  # One frame on the wire. `opcode`: a Symbol of OPCODES or any Integer 0..15; `rsv`: the
  # three RSV bits as 0..7 (4 is RSV1); `mask: false` breaks the rule that clients mask.
  def encode(opcode, payload = "", fin: true, rsv: 0, mask: true)
    code = opcode.is_a?(Symbol) ? OPCODES.fetch(opcode) : opcode
    data = payload.b
    size = data.bytesize
    mask_bit = mask ? 0x80 : 0
    frame = [(fin ? 0x80 : 0) | (rsv << 4) | code].pack("C")
    frame << if size < 126 then [mask_bit | size].pack("C")
             elsif size < 65_536 then [mask_bit | 126, size].pack("Cn")
             else [mask_bit | 127, size].pack("CQ>")
             end
    return frame << data unless mask

    key = SecureRandom.random_bytes(4)
    frame << key << apply_mask(data, key)
  end

  def apply_mask(data, key)
    k = key.bytes
    bytes = data.bytes
    bytes.each_index { |i| bytes[i] ^= k[i & 3] }
    bytes.pack("C*")
  end

  # The frame at the start of `buffer` and the bytes it takes, or nil while it is incomplete.
  def parse(buffer)
    return nil if buffer.bytesize < 2

    b0, b1 = buffer.unpack("CC")
    size = b1 & 0x7f
    offset = 2
    if size >= 126
      offset = size == 126 ? 4 : 10
      return nil if buffer.bytesize < offset

      size = size == 126 ? buffer.byteslice(2, 2).unpack1("n") : buffer.byteslice(2, 8).unpack1("Q>")
    end
    key = nil
    if b1 & 0x80 != 0
      return nil if buffer.bytesize < offset + 4

      key = buffer.byteslice(offset, 4)
      offset += 4
    end
    return nil if buffer.bytesize < offset + size

    payload = buffer.byteslice(offset, size)
    payload = apply_mask(payload, key) if key
    frame = Frame.new(b0 & 0x80 != 0, (b0 >> 4) & 7, NAMES.fetch(b0 & 0x0f, b0 & 0x0f), payload, !key.nil?)
    [frame, offset + size]
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # One client connection. `new` sends the upgrade request and reads the response head
  # (whatever its status; with `wait: false` that is left to #read_head, so many handshakes
  # can be in flight at once); `upgraded?` tells whether it was a valid 101.
  class Client
    attr_reader :status, :head, :headers, :socket, :pings

    # Opens a client, yields it and closes its socket afterwards.
    def self.open(*args, **options)
      client = new(*args, **options)
      yield client
    ensure
      client&.close_socket
    end

    def initialize(port, path = "/", key: SecureRandom.base64(16), version: "13", headers: {}, timeout: 5, wait: true)
      @key = key
      @buffer = String.new(encoding: Encoding::BINARY)
      @eof = false
      @pings = []
      @socket = TCPSocket.new("127.0.0.1", port)
      write(WsFrames.upgrade_request(path, port: port, key: key, version: version, headers: headers))
      read_head(timeout) if wait
    end

    def upgraded?
      @status == 101 && @key && @headers["sec-websocket-accept"] == WsFrames.accept_key(@key)
    end

    # Raw bytes to the server; false when the server already closed the connection.
    def write(bytes)
      @socket.write(bytes)
      true
    rescue Errno::EPIPE, Errno::ECONNRESET, IOError
      false
    end

    def send_frame(opcode, payload = "", **options)
      write(WsFrames.encode(opcode, payload, **options))
    end

    def text(string) = send_frame(:text, string)
    def binary(string) = send_frame(:binary, string)
    def ping(payload = "") = send_frame(:ping, payload)

    def close(code = nil, reason = "")
      send_frame(:close, code ? [code].pack("n") + reason.b : "")
    end

    # The next frame; nil when `timeout` passes first or the server closed the socket (eof?).
    def read_frame(timeout = 5)
      deadline = WsFrames.now + timeout
      loop do
        frame, used = WsFrames.parse(@buffer)
        if frame
          @buffer = @buffer.byteslice(used..)
          return frame
        end
        return nil unless fill(deadline)
      end
    end

    # The next message: [:text, UTF-8 String] or [:binary, binary String], reassembled from
    # its fragments; pings met on the way are kept in #pings (pongs skipped); a Close comes
    # back as [:close, Frame]. nil on timeout or EOF.
    def read_message(timeout = 5)
      deadline = WsFrames.now + timeout
      kind = nil
      data = nil
      loop do
        frame = read_frame(deadline - WsFrames.now) or return nil
        case frame.opcode
        when :ping
          @pings << frame.payload
          next
        when :pong then next
        when :close then return [:close, frame]
        when :text, :binary
          kind = frame.opcode
          data = frame.payload.dup
        when :continuation
          raise "a continuation frame without a first fragment" unless data

          data << frame.payload
        else raise "unexpected frame from the server: #{frame.inspect}"
        end
        next unless frame.fin

        return [kind, kind == :text ? data.force_encoding(Encoding::UTF_8) : data]
      end
    end

    # The payloads of the next `count` messages (raises on a Close, EOF or timeout first).
    def messages(count, timeout = 5)
      deadline = WsFrames.now + timeout
      Array.new(count) do |i|
        kind, data = read_message(deadline - WsFrames.now)
        raise "message #{i} of #{count}: got #{kind.inspect} #{data.inspect}" unless %i[text binary].include?(kind)

        data
      end
    end

    # The server's Close frame, skipping whatever comes before it; nil if none came in time.
    def read_close(timeout = 5)
      deadline = WsFrames.now + timeout
      loop do
        frame = read_frame(deadline - WsFrames.now) or return nil
        return frame if frame.opcode == :close
      end
    end

    # Whether the server closed the TCP connection within `timeout` (data meanwhile dropped).
    def eof_within?(timeout = 5)
      deadline = WsFrames.now + timeout
      @buffer.clear while fill(deadline)
      @eof
    end

    def eof?
      @eof
    end

    # The body of a non-101 answer (by its Content-Length).
    def body(timeout = 5)
      deadline = WsFrames.now + timeout
      length = @headers["content-length"].to_i
      fill(deadline) while @buffer.bytesize < length && !@eof && WsFrames.now < deadline
      @buffer.byteslice(0, length)
    end

    # Leaves: a FIN, or with `reset: true` an RST (SO_LINGER 0).
    def close_socket(reset: false)
      return if @socket.closed?

      @socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii")) if reset
      @socket.close
    end

    # Reads the response head (raises when none came within `timeout`).
    def read_head(timeout)
      deadline = WsFrames.now + timeout
      until (at = @buffer.index("\r\n\r\n"))
        raise "no response head within #{timeout}s, got #{@buffer.inspect}" unless fill(deadline)
      end
      @head = @buffer.byteslice(0, at)
      @buffer = @buffer.byteslice((at + 4)..)
      @status = @head[%r{\AHTTP/1\.1 (\d{3})}, 1].to_i
      @headers = {}
      @head.split("\r\n").drop(1).each do |line|
        name, value = line.split(":", 2)
        key = name.strip.downcase
        @headers[key] = [@headers[key], value.to_s.strip].compact.join("\n")
      end
    end

    private

    # Reads what is there into the buffer; false on timeout or EOF.
    def fill(deadline)
      return false if @eof

      left = deadline - WsFrames.now
      return false if left <= 0
      return false unless IO.select([@socket], nil, nil, left)

      @buffer << @socket.read_nonblock(1 << 20)
      true
    rescue IO::WaitReadable
      true
    rescue EOFError, Errno::ECONNRESET, IOError
      @eof = true
      false
    end
  end
end
