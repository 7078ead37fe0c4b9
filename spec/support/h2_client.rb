# frozen_string_literal: true

require "socket"

# An HTTP/2 client that speaks frames on a raw socket (RFC 9113), for the cases no
# well-behaved client produces: floods, resets, windows that never open, bad headers.
# Header blocks it sends are literal fields without Huffman coding; of the blocks it
# receives it decodes only the first field, `:status` (indexed, or a literal whose short
# value is plain or Huffman-coded digits).
class H2Client
  PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".b
  TYPES = { data: 0, headers: 1, rst_stream: 3, settings: 4, ping: 6, goaway: 7, window_update: 8,
            continuation: 9 }.freeze
  NAMES = TYPES.invert.freeze
  END_STREAM = 0x1
  END_HEADERS = 0x4
  ACK = 0x1
  # Error codes (RFC 9113 §7).
  ERRORS = { 0 => :no_error, 1 => :protocol_error, 3 => :flow_control_error, 7 => :refused_stream,
             8 => :cancel, 0xb => :enhance_your_calm }.freeze
  STATIC_STATUS = { 0x88 => 200, 0x89 => 204, 0x8a => 206, 0x8b => 304, 0x8c => 400, 0x8d => 404,
                    0x8e => 500 }.freeze

  # One frame received.
  Frame = Struct.new(:type, :flags, :stream, :payload) do
    def end_stream? = flags.anybits?(END_STREAM)

    # GOAWAY / RST_STREAM: the error code's name.
    def error
      code = type == :goaway ? payload.byteslice(4, 4).unpack1("N") : payload.unpack1("N")
      ERRORS.fetch(code, code)
    end
  end

  attr_reader :socket, :settings

  # Connects and sends the preface and a SETTINGS frame (`settings`: {id => value}).
  def initialize(port, host: "127.0.0.1", settings: {}, socket: nil)
    @socket = socket || TCPSocket.new(host, port)
    @socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1) if @socket.is_a?(TCPSocket)
    @buffer = "".b
    @settings = {}
    write(PREFACE + frame(:settings, 0, 0, settings.map { |id, v| [id, v].pack("nN") }.join))
  end

  def close
    @socket.close unless @socket.closed?
  end

  def frame(type, flags, stream, payload = "".b)
    payload = payload.b
    [payload.bytesize >> 16, payload.bytesize & 0xffff, TYPES.fetch(type), flags, stream].pack("CnCCN") + payload
  end

  def send_frame(type, flags, stream, payload = "".b)
    write(frame(type, flags, stream, payload))
  end

  def write(bytes)
    @socket.write(bytes)
  end

  # A header block of literal fields (never indexed, no Huffman).
  def self.block(fields)
    fields.map { |name, value| "\x10".b + int(name.bytesize) + name.b + int(value.to_s.bytesize) + value.to_s.b }.join
  end

  # An HPACK integer with a 7-bit prefix (RFC 7541 §5.1).
  def self.int(n)
    return [n].pack("C") if n < 127

    out = [127].pack("C")
    n -= 127
    while n >= 128
      out << [(n % 128) | 0x80].pack("C")
      n /= 128
    end
    out << [n].pack("C")
  end

  def self.request(method, path, authority: "localhost", scheme: "http", extra: [])
    block([[":method", method], [":scheme", scheme], [":path", path], [":authority", authority], *extra])
  end

  # Sends a request on `stream` (a body, if any, in one DATA frame).
  def request(stream, method, path, body: nil, extra: [], end_stream: body.nil?)
    flags = END_HEADERS | (end_stream ? END_STREAM : 0)
    send_frame(:headers, flags, stream, H2Client.request(method, path, extra: extra))
    send_frame(:data, END_STREAM, stream, body) if body
  end

  # The next frame, or nil when the connection closed or nothing came for `timeout` seconds.
  # SETTINGS from the server are recorded and acknowledged, PINGs answered.
  def next_frame(timeout = 10)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      if @buffer.bytesize >= 9
        len = (@buffer.getbyte(0) << 16) | (@buffer.getbyte(1) << 8) | @buffer.getbyte(2)
        if @buffer.bytesize >= 9 + len
          type, flags, stream = @buffer.unpack("x3CCN")
          f = Frame.new(NAMES.fetch(type, type), flags, stream & 0x7fff_ffff, @buffer.byteslice(9, len))
          @buffer = @buffer.byteslice(9 + len..)
          answer(f)
          return f
        end
      end
      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      return nil if left <= 0
      return nil unless @socket.wait_readable(left)

      chunk = begin
        @socket.read_nonblock(65_536, exception: false)
      rescue Errno::ECONNRESET, IOError
        nil
      end
      return nil if chunk.nil?
      next if chunk == :wait_readable

      @buffer << chunk
    end
  end

  # Frames until `stream` ends (or is reset, or the connection ends): [status, body, frames].
  # Each DATA frame's length is given back with WINDOW_UPDATEs (the connection's for every
  # stream, the stream's for `stream`) unless `window: false`.
  def response(stream, timeout: 10, window: true)
    status = nil
    body = "".b
    frames = []
    while (f = next_frame(timeout))
      frames << f
      # Any stream's data took from the connection's window: it is given back.
      if window && f.type == :data && !f.payload.empty?
        increment = [f.payload.bytesize].pack("N")
        send_frame(:window_update, 0, 0, increment)
        send_frame(:window_update, 0, stream, increment) if f.stream == stream && !f.end_stream?
      end
      next unless f.stream == stream || f.type == :goaway

      case f.type
      when :headers then status ||= H2Client.status(f.payload)
      when :data then body << f.payload
      when :rst_stream then return [:reset, body, frames]
      when :goaway then return [:goaway, body, frames] if status.nil? || f.stream < stream
      end
      break if f.end_stream?
    end
    [status, body, frames]
  end

  # `:status` from the first field of a header block.
  def self.status(block)
    first = block.getbyte(0)
    return STATIC_STATUS.fetch(first) if STATIC_STATUS.key?(first)
    return nil unless (first & 0x0f) == 8 || (first & 0x3f) == 8

    len = block.getbyte(1) & 0x7f
    value = block.byteslice(2, len)
    (block.getbyte(1) & 0x80).zero? ? value.to_i : huffman_digits(value).to_i
  end

  # Huffman-coded digits (RFC 7541 Appendix B: '0'-'2' are 00000-00010, '3'-'9' 011001-011111).
  def self.huffman_digits(bytes)
    bits = bytes.unpack1("B*")
    out = +""
    at = 0
    while at + 5 <= bits.size
      five = bits[at, 5].to_i(2)
      if five <= 2
        out << (48 + five).chr
        at += 5
      elsif at + 6 <= bits.size && (25..31).cover?(bits[at, 6].to_i(2))
        out << (48 + 3 + bits[at, 6].to_i(2) - 25).chr
        at += 6
      else
        break
      end
    end
    out
  end

  private

  def answer(frame)
    case frame.type
    when :settings
      return if frame.flags.anybits?(ACK)

      frame.payload.unpack("nN" * (frame.payload.bytesize / 6)).each_slice(2) { |id, v| @settings[id] = v }
      send_frame(:settings, ACK, 0)
    when :ping
      send_frame(:ping, ACK, 0, frame.payload) unless frame.flags.anybits?(ACK)
    end
  rescue IOError, SystemCallError
    nil
  end
end
