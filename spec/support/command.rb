# frozen_string_literal: true

require "open3"

# Runs real client tools (curl, openssl, python, …) from specs, every run bounded in time.
module CommandHelpers
  # Runs `command` with `input` on its stdin (then EOF), killed after `seconds`. Returns
  # [stdout (binary), stderr, Process::Status, seconds it took, whether it was killed].
  def run_command(*command, input: "", seconds: 10)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Open3.popen3(*command) do |stdin, stdout, stderr, wait|
      stdout.binmode
      out = Thread.new { stdout.read }
      err = Thread.new { stderr.read }
      Thread.new do
        stdin.binmode
        stdin.write(input)
      rescue Errno::EPIPE, IOError
        nil
      ensure
        stdin.close unless stdin.closed?
      end
      timed_out = wait.join(seconds).nil?
      if timed_out
        Process.kill("KILL", wait.pid)
        wait.join
      end
      [out.value, err.value, wait.value, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, timed_out]
    end
  end
end
