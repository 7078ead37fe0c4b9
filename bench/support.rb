# frozen_string_literal: true

# What the benchmark scripts share: free ports and waiting for a server to listen.

require "socket"

# A TCP port nobody listens on right now.
def free_port
  s = TCPServer.new("127.0.0.1", 0)
  s.addr[1]
ensure
  s&.close
end

# Waits (up to 10 s) until `port` accepts; false if the server process `pid` exited first.
def wait_for(port, pid)
  100.times do
    TCPSocket.new("127.0.0.1", port).close
    return true
  rescue Errno::ECONNREFUSED
    return false if Process.waitpid(pid, Process::WNOHANG)

    sleep 0.1
  end
  false
end
