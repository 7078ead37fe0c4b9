# frozen_string_literal: true

require "spec_helper"
require "open3"
require_relative "../support/realtime"

# A process forked while serving holds copies of its parent's connections, whose queues and
# locks the parent's IO threads were using: there they read as closed and are never touched
# (`write` used to queue into the copy and wake the parent's runtime from the child). And once
# a server has stopped (its IO threads are gone), a later fork may use pub/sub again.
RSpec.describe "a forked child and its parent's state" do
  include RealtimeHelpers

  it "sees the parent's connections as closed, and the parent's connection goes on" do
    server = ServerProcess.new(["-t", "2", app_path("fork_in_callback.ru")])
    open_ws(server.port, "/") do |ws|
      ws.text("fork")
      expect(ws.read_message).to eq([:text, "child 0"])
      ws.text("after")
      expect(ws.read_message).to eq([:text, "echo after"])
    end
  ensure
    server&.stop
  end

  it "lets a process forked after the server stopped use pub/sub" do
    code = <<~RUBY
      require "iodine"
      Iodine.listen(service: :http, port: #{ServerProcess.free_port}, address: "127.0.0.1", handler: ->(_) { [200, {}, ["ok"]] })
      Iodine.threads = 1
      Iodine.run_after(100) { Iodine.stop }
      Iodine.start
      pid = Process.fork do
        got = []
        Iodine.subscribe("after") { |_ch, msg| got << msg }
        Iodine.publish("after", "message", Iodine::PubSub::PROCESS)
        exit!(0)
      rescue RuntimeError => e
        warn e.message
        exit!(1)
      end
      _, status = Process.waitpid2(pid)
      puts "child \#{status.exitstatus}"
    RUBY
    out, err, status = Timeout.timeout(30) { Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", code) }
    expect(status.success?).to be(true), err
    expect(out.lines.last.chomp).to eq("child 0"), err
  end
end
