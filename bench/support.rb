# frozen_string_literal: true

# What the benchmark scripts share: free ports, and a server pinned to a core for one run.

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

# Starts `cmd` (which listens on `port`) pinned to `cpu`, yields its pid once it accepts, and
# stops it (and its process group) afterwards.
def with_pinned_server(cmd, port, cpu:, env: {}, name: cmd.first)
  pid = Process.spawn(env, "taskset", "-c", cpu.to_s, *cmd, out: File::NULL, err: File::NULL, pgroup: true)
  raise "#{name} did not start" unless wait_for(port, pid)

  yield pid
ensure
  if pid
    Process.kill("TERM", -pid) rescue nil # rubocop:disable Style/RescueModifier
    Process.wait(pid) rescue nil # rubocop:disable Style/RescueModifier
  end
end
