# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require "json"

# In cluster mode a channel name over 64 KiB used to kill the worker that subscribed (the
# master took the Subscribe as a broken frame and dropped the link, and every client of that
# worker with it), and a message over the master's 64 MiB backlog was dropped silently for
# the other workers, blamed on "a worker not reading". Now both are ArgumentErrors at the
# call, before anything is sent, and the limits agree: a message the wire carries always
# reaches the other processes.
RSpec.describe "pub/sub limits in a cluster" do
  it "refuse an over-long channel and an over-large message at the call, and deliver the largest allowed" do
    Dir.mktmpdir("iodine-limits") do |dir|
      script = File.join(dir, "limits.rb")
      File.write(script, <<~RUBY)
        require "iodine"
        require "json"
        dir = #{dir.inspect}
        # Runs in the master: the size of each "big" message that reached it.
        Iodine.subscribe("big") { |_ch, msg| File.write(File.join(dir, "master-got"), msg.bytesize.to_s) if Iodine.master? }
        Iodine.on_state(:on_start) do
          next unless File.open(File.join(dir, "lock"), File::CREAT | File::EXCL | File::WRONLY) rescue nil

          Iodine.run_after(300) do
            tries = {
              "subscribe" => -> { Iodine.subscribe("c" * (64 * 1024 + 1)) { nil } },
              "publish channel" => -> { Iodine.publish("c" * (64 * 1024 + 1), "x") },
              "publish message" => -> { Iodine.publish("big", "m" * (64 * 1024 * 1024 + 1)) }
            }
            report = tries.transform_values do |call|
              call.call
              "accepted"
            rescue ArgumentError
              "ArgumentError"
            end
            Iodine.publish("big", "m" * (64 * 1024 * 1024))
            report["pid"] = Process.pid
            File.write(File.join(dir, "report"), JSON.generate(report))
          end
        end
        Iodine.listen(service: :http, port: Integer(ARGV[0]), address: "127.0.0.1", handler: ->(_) { [200, {}, [Process.pid.to_s]] })
        Iodine.threads = 1
        Iodine.workers = 2
        Iodine.start
      RUBY
      port = ServerProcess.free_port
      server = ServerProcess.new(nil, port: port, script: [script, port.to_s])
      begin
        report_file = File.join(dir, "report")
        got_file = File.join(dir, "master-got")
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
        sleep 0.1 until (File.size?(report_file) && File.size?(got_file)) || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        report = JSON.parse(File.read(report_file))
        expect(report.reject { |k, _| k == "pid" }).to eq("subscribe" => "ArgumentError", "publish channel" => "ArgumentError",
                                                        "publish message" => "ArgumentError")
        expect(File.read(got_file)).to eq((64 * 1024 * 1024).to_s)
        # The worker that tried is alive and serving: nothing broke its link.
        expect(Process.kill(0, report["pid"])).to eq(1)
        expect(server.log).not_to match(/crashed|not reading|broken/)
      ensure
        server.stop
      end
    end
  end
end
