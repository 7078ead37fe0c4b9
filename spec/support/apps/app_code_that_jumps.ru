# frozen_string_literal: true

# App code that jumps (Thread#kill) or raises where the server calls into it while reading the
# app's answer or serving rack.input: the jump must reach Ruby (the worker thread dies and is
# replaced), an exception must reach the app, and nothing may be swallowed or leak.

# An object whose implicit conversion to Integer kills the thread running it.
class KillsOnConversion
  def to_int
    Thread.current.kill
    200
  end
end

# An app answer that is no Rack triple and whose `inspect` (used in the error message) kills.
class KillsOnInspect
  def inspect
    Thread.current.kill
    "#<never>"
  end
end

# A streamed body whose `to_path` raises (as Rails' ActionController::Live body does): the
# server must send it through `each`.
class PathRaises
  CLOSED = [0]

  def to_path
    raise NoMethodError, "undefined method `to_path' for a live stream"
  end

  def each
    yield "live "
    yield "body"
  end

  def close
    CLOSED[0] += 1
  end
end

# A body whose `to_path` kills the thread: a jump still propagates.
class PathKills
  def to_path
    Thread.current.kill
    "/etc/hostname"
  end

  def each
    yield "never"
  end
end

# rack.input.read(len, buf) into a String another thread has locked (`IO#readpartial` into
# it): Ruby's RuntimeError must reach the app, without a longjmp through Rust frames.
def read_into_locked_buffer(input)
  buf = String.new
  r, w = IO.pipe
  reader = Thread.new { r.readpartial(16, buf) }
  sleep 0.001 until reader.status == "sleep" || !reader.alive?
  begin
    input.read(1 << 20, buf)
    "read #{buf.bytesize}"
  rescue RuntimeError => e
    e.message
  ensure
    w.write("x")
    reader.join(5)
    [r, w].each(&:close)
  end
end

run(lambda do |env|
  case env["PATH_INFO"]
  when "/status-kills" then [KillsOnConversion.new, {}, ["never sent"]]
  when "/inspect-kills" then KillsOnInspect.new
  when "/read-len-kills" then [200, {}, [env["rack.input"].read(KillsOnConversion.new).to_s]]
  when "/read-len-garbage"
    begin
      env["rack.input"].read("12")
      [200, {}, ["read"]]
    rescue TypeError => e
      [200, {}, ["TypeError: #{e.message}"]]
    end
  when "/locked" then [200, {}, [read_into_locked_buffer(env["rack.input"])]]
  when "/path-raises" then [200, { "Content-Type" => "text/plain" }, PathRaises.new]
  when "/path-kills" then [200, {}, PathKills.new]
  when "/closed" then [200, {}, [PathRaises::CLOSED[0].to_s]]
  when "/threads" then [200, {}, [Thread.list.count { |t| t.name.to_s.start_with?("iodine-worker") && t.alive? }.to_s]]
  else [200, {}, ["ok"]]
  end
end)
