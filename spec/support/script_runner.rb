# frozen_string_literal: true

require "open3"
require "json"

# Runs a Ruby script in its own process after `require "iodine"`, with an HTTP listener on a
# free port and two worker threads; the script prints its results as JSON on its last line.
module ScriptRunner
  # Returns [parsed last line, stderr, status]. `prelude` runs before `body`.
  def run_script(body, timeout: 15, prelude: "")
    script = <<~RUBY
      require "iodine"
      require "json"
      Iodine.listen(service: :http, port: #{ServerProcess.free_port}, address: "127.0.0.1", handler: ->(_) { [200, {}, ["ok"]] })
      Iodine.threads = 2
      #{prelude}
      #{body}
    RUBY
    out, err, status = Timeout.timeout(timeout) { Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", script) }
    [JSON.parse(out.lines.last || "null"), err, status]
  end
end
