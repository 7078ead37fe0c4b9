# frozen_string_literal: true

# rack.hijack with an interrupt (Thread#raise, as Timeout delivers it) arriving as
# TCPSocket.for_fd returns: the IO made there owns the descriptor, so the server must not
# close that number too. Reports: the interrupt's message | whether files opened afterwards
# survived a GC (the orphaned IO's finalizer closed a reused number before the fix) | whether
# env["rack.hijack_io"] holds the IO.
run(lambda do |env|
  return [200, {}, ["ok"]] unless env["PATH_INFO"] == "/hijack"

  hook = TracePoint.new(:c_return) do |tp|
    Thread.current.raise(RuntimeError, "late interrupt") if tp.method_id == :for_fd
  end
  error = begin
    hook.enable { env["rack.hijack"].call }
    "no interrupt"
  rescue RuntimeError => e
    e.message
  ensure
    hook.disable
  end
  io = env["rack.hijack_io"]
  files = Array.new(8) { File.open(__FILE__) }
  GC.start
  GC.start
  survived = files.all? do |f|
    f.rewind
    f.read(1) == "#"
  rescue SystemCallError, IOError
    false
  end
  files.each { |f| f.close rescue nil } # rubocop:disable Style/RescueModifier
  report = "#{error}|#{survived}|#{io.is_a?(IO)}"
  if io
    io.write("HTTP/1.1 200 OK\r\nContent-Length: #{report.bytesize}\r\nConnection: close\r\n\r\n#{report}")
    io.close
  end
  [200, { "Connection" => "close" }, [report]]
end)
