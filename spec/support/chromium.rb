# frozen_string_literal: true

require "tmpdir"

# Headless Chromium, the real browser of examples_spec and rails_spec.
module Chromium
  module_function

  # The chromium executable, or nil when it is not installed.
  def path
    %w[chromium chromium-browser].map { |c| `command -v #{c} 2>/dev/null`.strip }.find { |p| !p.empty? }
  end

  # The DOM headless Chromium ends up with for `url` ("" if it hung for a minute); `flags`
  # are more command-line switches (e.g. "--virtual-time-budget=5000").
  def dump_dom(chromium, url, *flags)
    out, writer = IO.pipe
    pid = Process.spawn(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=#{Dir.mktmpdir}",
                        *flags, "--dump-dom", url, out: writer, err: File::NULL)
    writer.close
    reader = Thread.new { out.read }
    Process.kill("KILL", pid) unless reader.join(60)
    Process.wait(pid)
    reader.value.to_s
  ensure
    out&.close
  end
end
