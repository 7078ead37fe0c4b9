# frozen_string_literal: true

# What the benchmark scripts share: free ports, a server pinned to a core for one run, and its
# resident memory.

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
# stops it (and its process group) afterwards: TERM, then KILL if it is still there 10 s later.
# The server's output goes to `log` (a path; none by default).
def with_pinned_server(cmd, port, cpu:, env: {}, name: cmd.first, log: File::NULL)
  pid = Process.spawn(env, "taskset", "-c", cpu.to_s, *cmd, out: log, err: %i[child out], pgroup: true)
  raise "#{name} did not start" unless wait_for(port, pid)

  yield pid
ensure
  if pid
    Process.kill("TERM", -pid) rescue nil # rubocop:disable Style/RescueModifier
    reap(pid, 10)
  end
end

# Waits up to `seconds` for `pid` to exit, then kills its process group and waits for it.
def reap(pid, seconds)
  (seconds * 10).times do
    return if Process.waitpid(pid, Process::WNOHANG)

    sleep 0.1
  end
  Process.kill("KILL", -pid)
  Process.wait(pid)
rescue Errno::ECHILD, Errno::ESRCH
  nil
end

# Resident memory of `pid` plus its direct children, in MiB (NaN once it is gone).
def rss_mb(pid)
  kb = File.read("/proc/#{pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i
  Dir.glob("/proc/[0-9]*/stat").each do |stat|
    fields = File.read(stat).split
    kb += File.read(stat.sub("stat", "status"))[/VmRSS:\s+(\d+)/, 1].to_i if fields[3].to_i == pid
  rescue Errno::ENOENT, Errno::ESRCH
    next
  end
  kb / 1024.0
rescue Errno::ENOENT
  Float::NAN
end
