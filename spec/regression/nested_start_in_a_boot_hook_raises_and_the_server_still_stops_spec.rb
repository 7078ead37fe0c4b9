# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require_relative "../support/process_tree"

# `Iodine.start` inside `Iodine.on_state(:pre_start)` (the server is not running yet, but it is
# starting) raises "Iodine already running!" there, instead of running a second server inside
# the first, which took the first one's stop (its timers, its traps) and left the outer server
# running for good. The hook's exception is logged (like any hook's) when the hook does not
# rescue it; the outer server serves, then stops on Iodine.stop or TERM and exits 0.
RSpec.describe "a nested Iodine.start in a :pre_start hook" do
  include ProcessTree

  around do |example|
    Dir.mktmpdir("iodine-nested-start") do |dir|
      @script = File.join(dir, "nested.rb")
      File.write(@script, <<~RUBY)
        require "iodine"
        rescue_it, port, workers, stop_after = ARGV
        warn "MAIN \#{Process.pid}"
        Iodine.listen(service: :http, port: Integer(port), address: "127.0.0.1",
                      handler: ->(_env) { [200, { "content-type" => "text/plain" }, ["outer \#{Process.pid}"]] })
        Iodine.threads = 1
        Iodine.workers = Integer(workers)
        hooks = 0
        Iodine.on_state(:pre_start) do
          hooks += 1
          next if hooks > 1 # a nested server's own :pre_start would come back here

          if rescue_it == "rescue"
            begin
              Iodine.start
              warn "NESTED: returned"
            rescue Exception => e # rubocop:disable Lint/RescueException
              warn "NESTED: \#{e.class}: \#{e.message}"
            end
          else
            Iodine.start
            warn "NESTED: returned"
          end
        end
        Iodine.on_state(:on_finish) { warn "ON_FINISH \#{Process.pid}" }
        Iodine.run_after(Integer(stop_after)) { Iodine.stop } if Integer(stop_after).positive?
        Iodine.start
        warn "START RETURNED hooks=\#{hooks}"
      RUBY
      example.run
    end
  end

  [1, 2].each do |workers|
    it "raises RuntimeError 'Iodine already running!' in the hook; the outer server (-w #{workers}) stops " \
       "itself (run_after 300 ms) and exits 0" do
      started = now
      out, status, timed_out = run_bounded([RbConfig.ruby, "-I#{ROOT}/lib", @script, "rescue",
                                            ServerProcess.free_port.to_s, workers.to_s, "300"], timeout: 15)
      took = now - started
      expect(timed_out).to be(false), "the server still ran 15 s after it asked itself to stop:\n#{out}"
      expect(status.exitstatus).to eq(0), out
      expect(took).to be < 10, out
      expect(out.scan(/^NESTED: .*$/)).to eq(["NESTED: RuntimeError: Iodine already running!"]), out
      main = out[/^MAIN (\d+)$/, 1]
      expect(out).to include("ON_FINISH #{main}")
      expect(out.scan(/^START RETURNED .*$/)).to eq(["START RETURNED hooks=1"]), out
    end
  end

  it "when the hook does not rescue it, the error is logged as the hook's; the server serves, then stops " \
     "on TERM with status 0" do
    port = ServerProcess.free_port
    server = ServerProcess.new(nil, port: port, script: [@script, "raise", port.to_s, "1", "0"])
    expect(http_get(port, "/").body).to eq("outer #{server.pid}")
    server.signal("TERM")
    status = server.wait(12)
    expect(status).not_to be_nil, "the server still runs 12 s after TERM:\n#{server.log}"
    expect(status.exitstatus).to eq(0), server.log
    expect(server.log).to include("Iodine.on_state(:pre_start) block raised RuntimeError: Iodine already running!")
    expect(server.log).not_to include("NESTED: returned")
    expect(server.log).to include("ON_FINISH #{server.pid}")
    expect(server.log.scan(/^START RETURNED .*$/)).to eq(["START RETURNED hooks=1"]), server.log
  ensure
    server&.stop("KILL")
  end
end
