# frozen_string_literal: true

# The baseline of bench/raw.rb: the raw TCP echo of bench/raw_app.rb written with plain Ruby
# (no gems): a TCPServer and one thread per connection that writes back every chunk it reads.
#
#   ruby bench/raw_threads.rb 3000

require "socket"

# Bytes read per call at most (the chunk is written back whole before the next read).
CHUNK = 64 * 1024

port = Integer(ARGV.fetch(0, "3000"))
server = TCPServer.new("127.0.0.1", port)
Signal.trap("TERM") { exit }

loop do
  sock = server.accept
  sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
  Thread.new(sock) do |s|
    buffer = String.new(capacity: CHUNK)
    loop { s.write(s.readpartial(CHUNK, buffer)) }
  rescue EOFError, IOError, SystemCallError
    nil
  ensure
    s.close
  end
end
