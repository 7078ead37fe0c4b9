# frozen_string_literal: true

# A client that floods one connection, for the flow-control specs (spec/support/flood.rb runs
# it as a process of its own, so its busy loop never holds the spec's GVL). Reads one JSON
# request on stdin, prints one JSON result on stdout; every step has a deadline.
#
#   {"port": 3000, "kind": "ws", "path": "/slow?id=a",   # or "kind": "raw", "hello": "slow a\n"
#    "frame": "binary",            # ws: "binary", "text" or "ping" (raw: the bytes are "x")
#    "size": 16384,                # payload bytes per frame / per raw write
#    "rate": null,                 # frames per second (null: as fast as the socket takes them)
#    "seconds": 3,                 # how long to flood
#    "max_bytes": 167772160,       # stop early once this much was sent (an old server takes all)
#    "after": "echo",              # then: "echo" (finish the last frame, send "echo-after" /
#                                  # "#END#" and wait for the answer; skipped when the cap
#                                  # stopped the flood), "reset" (RST), "close"
#                                  # (FIN) or "none" (leave the socket to the process's exit)
#    "after_timeout": 20,
#    "sndbuf": 65536}               # SO_SNDBUF (null: the kernel's; it can take 4 MiB itself)
#
# Writes are nonblocking: the bytes counted are the ones the kernel accepted.
#   -> {"sent": bytes accepted, "frames": whole frames sent, "seconds": the flood's length,
#       "stall": the longest time no byte was accepted, "stopped_by": "time" | "cap" | "closed",
#       "flood_end_at": monotonic time (the same clock as the server's and the spec's),
#       "echo_seconds": from the end of the flood to the answer, "reply": the answer,
#       "reset_at": monotonic time of the RST, "error": nil or what went wrong}

require "json"
require "socket"
require_relative "ws_frames"

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

request = JSON.parse($stdin.read)
result = { "sent" => 0, "frames" => 0, "stall" => 0.0, "stopped_by" => nil, "error" => nil }
ws = request["kind"] == "ws"
size = request.fetch("size", 16_384)
rate = request["rate"]
max_bytes = request.fetch("max_bytes", 160 * 1024 * 1024)
after_timeout = request.fetch("after_timeout", 20)

begin
  if ws
    client = WsFrames::Client.new(request.fetch("port"), request.fetch("path"), timeout: 5)
    raise "no 101: #{client.head}" unless client.upgraded?

    socket = client.socket
    opcode = request.fetch("frame", "binary").to_sym
    frame = WsFrames.encode(opcode, opcode == :text ? "t" * size : "b" * size) # masked once, sent again and again
  else
    socket = TCPSocket.new("127.0.0.1", request.fetch("port"))
    socket.write(request.fetch("hello"))
    frame = ("x" * size).b
  end
  socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
  socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_SNDBUF, request["sndbuf"]) if request["sndbuf"]
  per_chunk = [1, 65_536 / frame.bytesize].max
  chunk = frame * per_chunk
  pending = "".b
  queued = 0 # frames put into `pending` so far
  started = now
  deadline = started + request.fetch("seconds", 3)
  last_progress = started
  loop do
    t = now
    result["stall"] = [result["stall"], t - last_progress].max
    if t >= deadline
      result["stopped_by"] = "time"
      break
    end
    if result["sent"] >= max_bytes
      result["stopped_by"] = "cap"
      break
    end
    if pending.empty?
      if rate
        due = [((t - started) * rate).to_i - queued, per_chunk].min
        if due <= 0
          sleep 0.0005
          next
        end
        pending = frame * due
        queued += due
      else
        pending = chunk
        queued += per_chunk
      end
    end
    written = socket.write_nonblock(pending, exception: false)
    if written == :wait_writable
      IO.select(nil, [socket], nil, [deadline - now, 0.05].min.clamp(0, 0.05))
      next
    end
    result["sent"] += written
    last_progress = now
    pending = pending.byteslice(written..)
  rescue Errno::EPIPE, Errno::ECONNRESET, IOError => e
    result["stopped_by"] = "closed"
    result["closed_at"] = now
    result["error"] = "#{e.class}: #{e.message}" unless request["after"] == "none"
    break
  end
  result["flood_end_at"] = now
  result["seconds"] = (result["flood_end_at"] - started).round(3)
  result["frames"] = result["sent"] / frame.bytesize

  # An "echo" after a flood the server took whole (stopped by the cap) would wait for the
  # handler to work through all of it: the result says "cap" and the spec fails on that.
  skip = result["stopped_by"] == "closed" || (result["stopped_by"] == "cap" && request["after"] == "echo")
  unless skip
    case request.fetch("after", "none")
    when "echo"
      # The rest of the frame being sent goes out first (blocking, within the deadline).
      finish_by = now + after_timeout
      until pending.empty?
        raise "could not finish the last frame in #{after_timeout}s" if now > finish_by

        written = socket.write_nonblock(pending, exception: false)
        if written == :wait_writable
          IO.select(nil, [socket], nil, 0.05)
          next
        end
        result["sent"] += written
        pending = pending.byteslice(written..)
      end
      result["frames"] = result["sent"] / frame.bytesize
      if ws
        client.text("echo-after")
        loop do
          kind, data = client.read_message([finish_by - now, 0].max)
          raise "no echo within #{after_timeout}s (got #{kind.inspect})" unless kind
          raise "the server closed: #{data.close_code.inspect} #{data.close_reason}" if kind == :close
          next unless data == "echo-after"

          result["reply"] = data
          break
        end
      else
        socket.write("#END#")
        reply = +""
        until reply.include?("\n")
          left = finish_by - now
          raise "no answer within #{after_timeout}s (got #{reply.inspect})" if left <= 0
          next unless IO.select([socket], nil, nil, left)

          reply << socket.read_nonblock(4096)
        end
        result["reply"] = reply.chomp
      end
      result["echo_seconds"] = (now - result["flood_end_at"]).round(3)
    when "reset"
      socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii"))
      socket.close
      result["reset_at"] = now
    when "close"
      socket.close
    end
  end
rescue StandardError => e
  result["error"] = "#{e.class}: #{e.message}"
end
result["stall"] = result["stall"].round(3)
puts JSON.generate(result)
$stdout.flush
